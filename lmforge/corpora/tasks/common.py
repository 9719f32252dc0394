"""What every task set shares: splits, seeds, sampling without repeats, label noise,
ceilings, cards, slot filling with spans, and numerals.

**Splits.** ``train``, ``val``, ``test`` draw seen entities; ``test_unseen`` draws unseen
ones (:mod:`.entities`). Each split is its own random stream, seeded by
``(task, seed, split)``; the splits are rendered in a fixed order and a text already
used by any split is drawn again, so **no text occurs twice** in a task set.

**Languages.** Item ``i`` of a split is in ``langs[i % len(langs)]`` (then the split is
shuffled), so with ``("en", "zh")`` each split is half English, half Chinese.

**Noise and ceiling.** A classification set flips exactly ``k = round(rate * n)`` labels
of a split of ``n`` items, each to another label drawn uniformly. The noise-free label
is a function of the text, so the best any model can score on that split is::

    ceiling = (n - k) / n          (accuracy; the items whose label was not flipped)

Without noise the ceiling is 1.0.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ...errors import ConfigError
from ..world.lexicon import _ZH_DIGITS, LANGS, zh_number

SPLITS = ("train", "val", "test", "test_unseen")
DEFAULT_SIZES = {"train": 4000, "val": 500, "test": 1000, "test_unseen": 1000}
UNSEEN_SPLIT = "test_unseen"
MAX_MISSES = 2000


@dataclass
class TaskSet:
    """A rendered task set: records per split, its card, and the noise-free labels.

    ``clean[split][i]`` is the label of ``splits[split][i]`` before noise (classification
    and relation sets; empty for NER, whose tags carry no noise). It is not written to
    disk: it exists to check the card's ceilings.
    """

    name: str
    splits: dict[str, list[dict]]
    card: dict
    clean: dict[str, list[str]] = field(default_factory=dict)


# A unit is what one draw makes: usually one (record, noise-free label), or a pair.
Unit = list[tuple[dict, str]]
MakeUnit = Callable[[random.Random, str, bool], Unit]


def split_rng(name: str, seed: int, split: str) -> random.Random:
    """The random stream of one split (a string seed: stable across runs and platforms)."""
    return random.Random(f"lmforge-tasks:{name}:{int(seed)}:{split}")


def check_langs(langs: Iterable[str]) -> tuple[str, ...]:
    """``langs`` as a tuple of distinct known languages (at least one)."""
    langs = (langs,) if isinstance(langs, str) else tuple(langs)
    out = tuple(dict.fromkeys(langs))
    bad = [x for x in out if x not in LANGS]
    if bad or not out:
        raise ConfigError(f"langs must be a non-empty subset of {', '.join(LANGS)}; "
                          f"got {list(langs)!r}")
    return out


def resolve_sizes(splits: Sequence[str], defaults: Mapping[str, int],
                  sizes: Mapping[str, int] | None, even: Sequence[str] = ()) -> dict[str, int]:
    """The defaults overridden by ``sizes``; unknown splits or bad counts raise ConfigError.

    The order is the rendering order: every evaluation split before ``train`` (a text is
    drawn once, so a split avoids the texts of those before it). A bigger or smaller
    training set therefore never changes what the model is evaluated on."""
    out = {s: defaults[s] for s in sorted(splits, key=lambda s: s == "train")}
    for split, n in (sizes or {}).items():
        if split not in out:
            raise ConfigError(f"sizes: unknown split {split!r}; allowed: {', '.join(splits)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"sizes[{split!r}] must be an integer >= 0; got {n!r}")
        if split in even and n % 2:
            raise ConfigError(f"sizes[{split!r}] must be even (the split holds pairs); got {n}")
        out[split] = n
    return out


def draw_split(name: str, seed: int, split: str, n: int, langs: tuple[str, ...],
               make: MakeUnit, used: set[str]) -> list[Unit]:
    """Units of one split holding ``n`` records, none of whose texts is in ``used``.

    ``make(rng, lang, unseen)`` draws a unit; texts already used (by this or an earlier
    split) are drawn again. Adds the texts to ``used``; the units come back shuffled.
    ``MAX_MISSES`` draws in a row that only repeat texts mean the generator is exhausted.
    """
    rng = split_rng(name, seed, split)
    unseen = split == UNSEEN_SPLIT
    units: list[Unit] = []
    made = misses = 0
    while made < n:
        unit = make(rng, langs[len(units) % len(langs)], unseen)
        texts = [rec["text"] for rec, _ in unit]
        if len(set(texts)) < len(texts) or any(t in used for t in texts):
            misses += 1
            if misses > MAX_MISSES:
                raise ConfigError(f"sizes[{split!r}]={n} is more than the {name} set can "
                                  f"render without repeating a text; use a smaller size")
            continue
        misses = 0
        used.update(texts)
        units.append(unit)
        made += len(unit)
    rng.shuffle(units)
    return units


def number_records(name: str, split: str, units: list[Unit]) -> tuple[list[dict], list[str]]:
    """Flatten units into records with ids ``{name}-{split}-{i:05d}``, and their labels."""
    records, clean = [], []
    for rec, label in (x for unit in units for x in unit):
        records.append({"id": f"{name}-{split}-{len(records):05d}", **rec})
        clean.append(label)
    return records, clean


def apply_noise(rng: random.Random, records: list[dict], rate: float,
                labels: Sequence[str], key: str = "label") -> int:
    """Flip exactly ``round(rate * n)`` of the records' ``key`` fields, each to another
    label drawn uniformly; returns the number flipped."""
    k = round(rate * len(records))
    for i in rng.sample(range(len(records)), k):
        old = records[i][key]
        records[i][key] = rng.choice([x for x in labels if x != old])
    return k


def render_labelled(name: str, seed: int, sizes: Mapping[str, int], langs: tuple[str, ...],
                    make_for: Callable[[str, set[str]], MakeUnit], labels: Sequence[str],
                    noise: Mapping[str, float], key: str = "label") -> tuple[dict, dict, dict]:
    """Render every split of a labelled set (in the order of ``sizes``; ``make_for(split,
    used)`` gives the split's unit maker, ``used`` the texts taken so far), then flip
    ``noise[split]`` of the labels (field ``key``). Returns the splits, the noise-free
    labels, and the card fields ``label_distribution``, ``noise_rate``, ``noisy_items``
    and ``ceiling``."""
    used: set[str] = set()
    splits: dict[str, list[dict]] = {}
    clean: dict[str, list[str]] = {}
    noisy: dict[str, int] = {}
    for split, n in sizes.items():
        units = draw_split(name, seed, split, n, langs, make_for(split, used), used)
        splits[split], clean[split] = number_records(name, split, units)
        noisy[split] = apply_noise(split_rng(name, seed, f"{split}:noise"), splits[split],
                                   noise[split], labels, key)
    fields = {
        "label_distribution": {s: distribution((r[key] for r in recs), labels)
                               for s, recs in splits.items()},
        "noise_rate": dict(noise),
        "noisy_items": noisy,
        "ceiling": {s: (len(recs) - noisy[s]) / len(recs) if recs else 1.0
                    for s, recs in splits.items()},
    }
    return splits, clean, fields


def distribution(values: Iterable[str], order: Sequence[str] = ()) -> dict[str, int]:
    """Counts of ``values``: the names of ``order`` first (zeros kept), then the rest."""
    counts = Counter(values)
    out = {k: counts.get(k, 0) for k in order}
    out.update({k: counts[k] for k in sorted(counts) if k not in out})
    return out


def base_card(name: str, *, description: str, labels: Sequence[str], metric: str, seed: int,
              langs: tuple[str, ...], splits: dict[str, list[dict]],
              unseen: dict[str, list[str]], partition: str) -> dict:
    """The card fields every task set has (the task adds its labels and ceilings)."""
    return {
        "task": name,
        "description": description,
        "labels": list(labels),
        "metric": metric,
        "seed": int(seed),
        "langs": list(langs),
        "sizes": {s: len(r) for s, r in splits.items()},
        "lang_distribution": {s: distribution((x["lang"] for x in r), langs)
                              for s, r in splits.items()},
        "unseen_entities": unseen,
        "partition": partition,
    }


PARTITION = ("fixed seen/unseen partition of the cast (about 75/25 per kind, see "
             "lmforge/corpora/tasks/entities.py); train/val/test use seen entities only, "
             "test_unseen unseen ones only; countries are shared")


# ----------------------------------------------------------------------------- slots

_PH = re.compile(r"\{(\w+)\}")


def fill(template: str, values: Mapping[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """``template`` with each ``{slot}`` replaced by ``values[slot]``, and the character
    span ``(start, end)`` (end exclusive) of each slot's value in the result."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = last = 0
    for m in _PH.finditer(template):
        lit = template[last:m.start()]
        value = values[m.group(1)]
        out += (lit, value)
        pos += len(lit)
        spans[m.group(1)] = (pos, pos + len(value))
        pos += len(value)
        last = m.end()
    out.append(template[last:])
    return "".join(out), spans


# ----------------------------------------------------------------------------- numerals

_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def en_words(n: int) -> str:
    """English words for ``1 <= n <= 99`` (``forty-five``)."""
    if not 1 <= n <= 99:
        raise ValueError(f"en_words supports 1..99, got {n}")
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def zh_int(n: int, liang: bool = True) -> str:
    """Chinese numeral for ``1 <= n <= 99999``: 三百二十, 一千零五, 两万五千.

    Below 100 this is the world's :func:`zh_number`; a zero inside is read 零 once;
    with ``liang`` a leading 2 before 百/千/万 (and a lone 2) is 两.
    """
    if not 1 <= n <= 99999:
        raise ValueError(f"zh_int supports 1..99999, got {n}")
    if n < 100:
        return zh_number(n, liang)
    out: list[str] = []
    rest, zero = n, False
    for value, unit in ((10000, "万"), (1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d, rest = divmod(rest, value)
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        digit = "两" if d == 2 and liang and not out and value >= 100 else _ZH_DIGITS[d]
        out.append(digit + unit)
    return "".join(out)


def zh_year(year: int) -> str:
    """A year read digit by digit: 2019 -> 二〇一九年."""
    return "".join("〇" if c == "0" else _ZH_DIGITS[int(c)] for c in str(year)) + "年"


def percent(n: int, lang: str, digits: bool = True) -> str:
    """``45%``, or in Chinese 百分之四十五 (``digits``: 45% in Chinese text too)."""
    return f"{n}%" if lang == "en" or digits else f"百分之{zh_int(n, liang=False)}"


def count(n: int, lang: str) -> str:
    """A count as written in running text: digits in English, a numeral in Chinese."""
    return str(n) if lang == "en" else zh_int(n)
