"""Translation: the world's sentences as parallel pairs, with splits meant to be hard.

Every pair is one derivation of the world's grammar (:mod:`lmforge.corpora.world`)
rendered in the source and the target language, so the target is a function of the
source: the **ceiling is exact match 1.0 and BLEU 100 on every split**. Only the
constructions that have a template in both languages are drawn (uniformly), so a pair
of languages may use fewer constructions than the world has.

Splits:

* ``train``, ``val``, ``test``: single sentences, the world's cast;
* ``test_long``: two or three sentences of the test distribution joined (a space
  between them, none in Chinese), each pair longer in characters than every training
  source, so a model meets lengths it never saw;
* ``test_unseen``: single sentences whose people are replaced by people of the same
  gender who never occur in training (:mod:`.entities`): a name must be copied
  (Latin to Latin) or transliterated (Latin to Chinese, 奥斯卡 for Oscar), and the
  pronouns still agree;
* ``test_compositional``: single sentences whose construction holds one of its two
  held-out colours. For construction number ``i`` (in the world's order) the held-out
  colours are numbers ``5i mod 12`` and ``5i + 1 mod 12``; ``train``, ``val``, ``test``
  and ``test_long`` never pair that construction with them, though every colour occurs
  in training with other constructions. The model must compose a known colour with a
  known construction in a way it has not seen.

No source text occurs in two splits. Records are ``{"id", "src", "tgt", "src_lang",
"tgt_lang", "construction"}`` (``construction`` joins the names with ``+`` in
``test_long``), the shape :func:`lmforge.data.parallel.read_parallel` reads as JSONL.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable

from ...errors import ConfigError
from ..world import default_world
from ..world.german import genitive
from ..world.grammar import Construction, Sentence
from ..world.lexicon import MT_LANGS
from .common import TaskSet, distribution, split_rng
from .entities import Entity, cast

NAME = "translation"
SPLITS = ("train", "val", "test", "test_long", "test_unseen", "test_compositional")
SIZES = {"train": 50000, "val": 500, "test": 1000, "test_long": 300, "test_unseen": 500,
         "test_compositional": 500}
HELD_OUT_COLOURS = 2
MAX_MISSES = 5000


@functools.lru_cache(maxsize=8)
def constructions(src_lang: str, tgt_lang: str) -> tuple[Construction, ...]:
    """The world's constructions with a template in both languages."""
    found = tuple(c for c in default_world().constructions
                  if src_lang in c.templates and tgt_lang in c.templates)
    if not found:
        raise ConfigError(f"the world has no construction in both {src_lang} and {tgt_lang}")
    return found


def held_out(c: Construction) -> frozenset[int]:
    """The colours (values of the ``color`` domain) held out of training for ``c``."""
    if not any(d.name == "color" for d in c.domains):
        return frozenset()
    i = [x.name for x in default_world().constructions].index(c.name)
    n = default_world().domains["color"].size
    return frozenset((5 * i + k) % n for k in range(HELD_OUT_COLOURS))


def is_compositional(s: Sentence) -> bool:
    """Whether ``s`` pairs its construction with one of that construction's held-out
    colours."""
    hold = held_out(s.construction)
    return any(d.name == "color" and v in hold
               for d, v in zip(s.construction.domains, s.values, strict=True))


def _sample(rng: random.Random, pool: tuple[Construction, ...]) -> Sentence:
    c = rng.choice(pool)
    values = c.sample_values(rng)
    return Sentence(c, values, default_world().grammar.bits_of(c, values))


def _joiner(lang: str) -> str:
    return "" if lang == "zh" else " "


def _unseen_people(rng: random.Random, s: Sentence) -> dict[int, Entity]:
    """For each person value in ``s``, an unseen person of the same gender (distinct)."""
    person = default_world().domains["person"]
    values = sorted({v for d, v in zip(s.construction.domains, s.values, strict=True)
                     if d.name == "person"})
    out: dict[int, Entity] = {}
    for v in values:
        pool = [e for e in cast().pool("PER", True, person.attrs["gender"][v])
                if e not in out.values()]
        out[v] = rng.choice(pool)
    return out


def render_with(s: Sentence, lang: str, people: dict[int, Entity]) -> str:
    """``s`` in ``lang`` with each person's name replaced by ``people[value]``'s (a German
    genitive is formed again: Annas, Felix')."""
    if not people:
        return s.render(lang)
    c = s.construction
    names = default_world().domains["person"].form(lang, "w")
    out = []
    for seg in s.segments(lang):
        if seg.slot is not None and c.domains[c.index[seg.slot]].name == "person":
            v = s.value(seg.slot)
            if v in people and lang == "de" and seg.text == genitive(names[v]):
                out.append(genitive(people[v].name(lang)))  # Oscars, but Felix'
                continue
            if v in people and names[v] in seg.text:
                out.append(seg.text.replace(names[v], people[v].name(lang)))
                continue
        out.append(seg.text)
    return "".join(out)


Pair = tuple[str, str, str]  # source, target, construction(s)
MakePair = Callable[[random.Random], Pair]


def _makers(src: str, tgt: str, min_long: int) -> dict[str, MakePair]:
    pool = constructions(src, tgt)

    def seen(rng: random.Random) -> Sentence:
        while True:
            s = _sample(rng, pool)
            if not is_compositional(s):
                return s

    def single(rng: random.Random) -> Pair:
        s = seen(rng)
        return s.render(src), s.render(tgt), s.name

    def long(rng: random.Random) -> Pair:
        while True:
            parts = [seen(rng) for _ in range(rng.choice((2, 3)))]
            source = _joiner(src).join(p.render(src) for p in parts)
            if len(source) > min_long:
                return (source, _joiner(tgt).join(p.render(tgt) for p in parts),
                        "+".join(p.name for p in parts))

    def unseen(rng: random.Random) -> Pair:
        s = seen(rng)
        people = _unseen_people(rng, s)
        return render_with(s, src, people), render_with(s, tgt, people), s.name

    def compositional(rng: random.Random) -> Pair:
        held = tuple(c for c in pool if held_out(c))
        while True:
            s = _sample(rng, held)
            if is_compositional(s):
                return s.render(src), s.render(tgt), s.name

    return {"train": single, "val": single, "test": single, "test_long": long,
            "test_unseen": unseen, "test_compositional": compositional}


def _draw(split: str, n: int, make: MakePair, rng: random.Random, used: set[str],
          src: str, tgt: str) -> list[dict]:
    records: list[dict] = []
    misses = 0
    while len(records) < n:
        source, target, name = make(rng)
        if source in used:
            misses += 1
            if misses > MAX_MISSES:
                raise ConfigError(f"sizes[{split!r}]={n} is more than the translation set "
                                  f"can render without repeating a sentence")
            continue
        misses = 0
        used.add(source)
        records.append({"id": f"{NAME}-{src}-{tgt}-{split}-{len(records):05d}", "src": source,
                        "tgt": target, "src_lang": src, "tgt_lang": tgt,
                        "construction": name})
    return records


def check_pair(langs: Iterable[str]) -> tuple[str, str]:
    """``langs`` as (source, target): two distinct languages of the world."""
    pair = (langs,) if isinstance(langs, str) else tuple(langs)
    if len(pair) != 2 or pair[0] == pair[1] or any(x not in MT_LANGS for x in pair):
        raise ConfigError(f"translation needs langs=(source, target), two distinct of "
                          f"{', '.join(MT_LANGS)}; got {list(pair)!r}")
    return pair[0], pair[1]


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The pairs ``langs[0] -> langs[1]`` (see the module docstring); ``sizes`` resolved.

    The evaluation splits are drawn first, then ``train``; ``test_long`` is drawn last,
    once the longest training source is known."""
    src, tgt = check_pair(langs)
    used: set[str] = set()
    order = [s for s in sizes if s != "test_long"] + ["test_long"]
    splits: dict[str, list[dict]] = {}
    for split in order:
        min_long = max((len(r["src"]) for r in splits.get("train", [])), default=0)
        make = _makers(src, tgt, min_long)[split]
        splits[split] = _draw(split, sizes[split], make, split_rng(f"{NAME}:{src}-{tgt}",
                                                                    seed, split),
                              used, src, tgt)
    splits = {s: splits[s] for s in sizes}
    pool = constructions(src, tgt)
    card = {
        "task": NAME,
        "description": f"{src} -> {tgt} pairs of the world's sentences, with long, "
                       "unseen-name and compositional test splits",
        "metric": "sacreBLEU and chrF (tokenize zh for Chinese targets, else 13a), "
                  "exact match",
        "seed": int(seed),
        "langs": [src, tgt],
        "sizes": {s: len(r) for s, r in splits.items()},
        "constructions": [c.name for c in pool],
        "construction_distribution": {s: distribution(r["construction"] for r in recs)
                                      for s, recs in splits.items() if s != "test_long"},
        "held_out_colours": {c.name: sorted(default_world().domains["color"].labels[v]
                                            for v in held_out(c))
                             for c in pool if held_out(c)},
        "longest_train_source_chars": max((len(r["src"]) for r in splits.get("train", [])),
                                          default=0),
        "unseen_people": [e.en for e in cast().pool("PER", True)],
        "ceiling": {s: {"exact_match": 1.0, "bleu": 100.0} for s in splits},
        "ceiling_reason": "each target is the rendering of the source's unique derivation, "
                          "a function of the source",
    }
    return TaskSet(NAME, splits, card)
