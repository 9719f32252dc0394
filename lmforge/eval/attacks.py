"""Adversarial text attacks for evaluating classifiers and NER models under attack, and
the normalisation defences applied to records (``lmforge evaluate RUN --attack ...``).

Four attacks, each at a rate ``r`` in (0, 1] and deterministic per seed (record ``i`` is
attacked with its own ``random.Random(f"{attack}:{seed}:{i}")``, so a record's attack does
not depend on the others)::

    charnoise  each letter or digit is edited with probability r, by one of (uniformly)
               insert (a random character after it), delete, swap (with the character
               before it, when that is a letter or digit too) or substitute (a random
               different character); the random character is an ASCII letter of the
               same case for ASCII, else a character of the record's own text (so
               Chinese gets Chinese characters)
    homoglyph  each ASCII letter is replaced with probability r by one of its
               look-alikes: the Cyrillic/Greek letters of
               :data:`lmforge.data.normalize_adversarial.LOOKALIKES` and its full-width
               form (``a`` -> ``а``, ``α`` or ``ａ``)
    zerowidth  after each non-space character, with probability r, one of U+200B, U+200C,
               U+200D, U+2060, U+FEFF is inserted
    synonym    EDA's synonym replacement (:mod:`lmforge.data.augment`, the world's synonym
               sets) with strength alpha = r: max(1, floor(r * l)) distinct non-stop words
               of the l words are replaced; NER records change only words tagged O

Labels are kept. **NER** (records with ``tokens`` and ``tags``): the character attacks work
per token (a token never loses its last character, and nothing is inserted between
tokens), so the tags stay aligned; the text is rebuilt from the new tokens with the
original text between them, and ``offsets`` and the gold ``spans`` (``start``, ``end``,
``text``) are re-mapped to it: a span that started at token ``a``'s start and ended at
token ``b``'s end does so again. The synonym attack re-maps them through
:func:`lmforge.data.augment.augment_record`. So the entity metrics (on tags) stay
computable and the gold character spans still slice the attacked text exactly.

:func:`defended` applies :data:`lmforge.data.clean.DEFENCES` (the invisible-character,
homoglyph and mixed-script steps of :func:`~lmforge.data.clean.clean_text`, nothing else)
to records the same way: per text, or per token for NER. On ASCII text they undo the
homoglyph and zerowidth attacks exactly.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from typing import Any, Protocol

from ..errors import ConfigError, DataError

__all__ = ["Attack", "ATTACKS", "ZERO_WIDTH", "check_rate", "attack_text", "attack_records",
           "defended", "evaluate_under_attack"]


class Attack(str, Enum):
    """The attacks (the choices of ``lmforge evaluate --attack``)."""

    charnoise = "charnoise"
    homoglyph = "homoglyph"
    zerowidth = "zerowidth"
    synonym = "synonym"


ATTACKS = tuple(a.value for a in Attack)
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_TEXT_FIELDS = ("text", "text_b")


def check_rate(rate: Any) -> float:
    """``rate`` as a float in (0, 1], else :class:`ConfigError`."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise ConfigError(f"--rate {rate!r}: the attack rate must be in (0, 1]")
    return float(rate)


def _check_attack(attack: str) -> str:
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    return attack


# ----------------------------------------------------------------------------- characters


@lru_cache(maxsize=1)
def _homoglyphs() -> dict[str, tuple[str, ...]]:
    """ASCII letter -> its Cyrillic/Greek look-alikes and its full-width form."""
    from ..data.normalize_adversarial import LOOKALIKES, is_cyrillic_or_greek

    out: dict[str, list[str]] = {c: [chr(ord(c) + 0xFEE0)] for c in string.ascii_letters}
    for ch, a in sorted(LOOKALIKES.items()):
        if is_cyrillic_or_greek(ch) and a in out:
            out[a].append(ch)
    return {a: tuple(v) for a, v in out.items()}


def _random_char(ch: str, alphabet: str, rng: random.Random) -> str:
    """A random character other than ``ch``: an ASCII letter of ``ch``'s case for an ASCII
    ``ch``, else one of ``alphabet`` (the record's non-ASCII letters and digits); ``ch``
    itself when there is no other."""
    pool = (string.ascii_uppercase if ch.isupper() else string.ascii_lowercase) \
        if ch.isascii() else alphabet
    pool = pool.replace(ch, "")
    return rng.choice(pool) if pool else ch


def _charnoise(piece: str, rate: float, rng: random.Random, alphabet: str
               ) -> tuple[str, int]:
    """``piece`` with its letters and digits edited at ``rate``; the number of edits."""
    out: list[str] = []
    edits = 0
    for i, ch in enumerate(piece, 1):
        if not ch.isalnum() or rng.random() >= rate:
            out.append(ch)
            continue
        edits += 1
        op = rng.choice(("insert", "delete", "swap", "substitute"))
        if op == "swap" and out and out[-1].isalnum() and out[-1] != ch:
            out.insert(-1, ch)
        elif op == "insert":
            out += [ch, _random_char(ch, alphabet, rng)]
        elif op == "delete" and (out or i < len(piece)):
            pass  # the piece keeps at least one character
        else:
            out.append(_random_char(ch, alphabet, rng))
    return "".join(out), edits


def _homoglyph(piece: str, rate: float, rng: random.Random) -> str:
    table = _homoglyphs()
    return "".join(rng.choice(table[ch]) if ch in table and rng.random() < rate else ch
                   for ch in piece)


def _zerowidth(piece: str, rate: float, rng: random.Random) -> str:
    return "".join(ch + rng.choice(ZERO_WIDTH)
                   if not ch.isspace() and rng.random() < rate else ch for ch in piece)


def _char_attack(attack: str, rate: float, rng: random.Random, alphabet: str
                 ) -> Callable[[str], str]:
    """The per-piece function of a character attack (a text or one token)."""
    if attack == "charnoise":
        return lambda s: _charnoise(s, rate, rng, alphabet)[0]
    if attack == "homoglyph":
        return lambda s: _homoglyph(s, rate, rng)
    return lambda s: _zerowidth(s, rate, rng)


def _alphabet(texts: list[str]) -> str:
    return "".join(sorted({c for t in texts for c in t if c.isalnum() and not c.isascii()}))


def _synonym_rate(rate: float) -> dict[str, float]:
    """EDA keywords: synonym replacement alone at strength ``rate``, one copy."""
    return {"n_aug": 1, "alpha": rate, "alpha_ri": 0.0, "alpha_rs": 0.0, "alpha_rd": 0.0}


def attack_text(text: str, attack: str, rate: float, rng: random.Random) -> str:
    """``text`` under ``attack`` at ``rate`` (see the module docstring)."""
    _check_attack(attack)
    rate = check_rate(rate)
    if attack == "synonym":
        from ..data.augment import augment_text

        return augment_text(text, rng=rng, **_synonym_rate(rate))[-1]
    return _char_attack(attack, rate, rng, _alphabet([text]))(text)


# ----------------------------------------------------------------------------- records


def _retokenized(rec: dict, tokens: list[str]) -> dict:
    """``rec`` with new ``tokens`` (one per old token): the text rebuilt with the old text
    between tokens, ``offsets`` and gold ``spans`` re-mapped to it."""
    from ..tasks.encode import word_spans

    text, old = rec["text"], word_spans(rec)
    parts, offsets, n, pos = [], [], 0, 0
    for (s, e), tok in zip(old, tokens, strict=True):
        parts += [text[pos:s], tok]
        n += s - pos
        offsets.append([n, n + len(tok)])
        n += len(tok)
        pos = e
    parts.append(text[pos:])
    new_text = "".join(parts)
    out = {**rec, "text": new_text, "tokens": tokens, "offsets": offsets}
    if rec.get("spans"):
        starts = {s: o[0] for (s, _), o in zip(old, offsets, strict=True)}
        ends = {e: o[1] for (_, e), o in zip(old, offsets, strict=True)}
        spans = []
        for sp in rec["spans"]:
            a, b = starts.get(sp["start"]), ends.get(sp["end"])
            if a is None or b is None:
                raise DataError(f"record {rec.get('id', '?')}: span ({sp['start']}, "
                                f"{sp['end']}) does not start and end at token boundaries")
            spans.append({**sp, "start": a, "end": b,
                          **({"text": new_text[a:b]} if "text" in sp else {})})
        out["spans"] = spans
    return out


def _is_tagged(rec: dict) -> bool:
    return "tokens" in rec and "tags" in rec


def _attack_record(rec: dict, attack: str, rate: float, rng: random.Random) -> dict:
    if attack == "synonym":
        from ..data.augment import augment_record

        if _is_tagged(rec):
            copy = augment_record(rec, rng=rng, task="ner", **_synonym_rate(rate))[-1]
        else:
            copy = {**rec, **{f: attack_text(rec[f], attack, rate, rng)
                              for f in _TEXT_FIELDS if isinstance(rec.get(f), str)}}
        copy.pop("augmented", None)
        return copy
    fields = [rec[f] for f in _TEXT_FIELDS if isinstance(rec.get(f), str)]
    edit = _char_attack(attack, rate, rng, _alphabet(fields))
    if _is_tagged(rec):
        return _retokenized(rec, [edit(t) for t in rec["tokens"]])
    return {**rec, **{f: edit(rec[f]) for f in _TEXT_FIELDS if isinstance(rec.get(f), str)}}


def attack_records(records: list[dict], attack: str, rate: float, seed: int = 0
                   ) -> list[dict]:
    """Attacked copies of classification or NER records (labels kept; see the module
    docstring); record ``i`` uses ``random.Random(f"{attack}:{seed}:{i}")``."""
    _check_attack(attack)
    rate = check_rate(rate)
    return [_attack_record(r, attack, rate, random.Random(f"{attack}:{seed}:{i}"))
            for i, r in enumerate(records)]


def defended(records: list[dict]) -> list[dict]:
    """Records with the adversarial defences
    (:func:`lmforge.data.normalize_adversarial.defend`, the steps that
    :data:`lmforge.data.clean.DEFENCES` switches on) applied to each text; NER: to each
    token, with the record's whole text deciding whether Cyrillic/Greek look-alikes are
    folded, offsets and spans re-mapped, and a token the defences would empty kept."""
    from ..data.normalize_adversarial import defend

    out = []
    for rec in records:
        if _is_tagged(rec):
            tokens = [defend(t, rec["text"]) or t for t in rec["tokens"]]
            out.append(_retokenized(rec, tokens))
        else:
            out.append({**rec, **{f: defend(rec[f]) or rec[f] for f in _TEXT_FIELDS
                                  if isinstance(rec.get(f), str)}})
    return out


class _Evaluates(Protocol):
    def evaluate(self, records: list[dict]) -> dict: ...


def evaluate_under_attack(predictor: _Evaluates, records: list[dict], attack: str,
                          rate: float, seed: int = 0, defend: bool = False,
                          clean: dict | None = None) -> dict:
    """A task predictor's metrics on ``records`` and on their attacked copies:
    ``{"clean", "attacked", "drop"}`` (each ``{metric: value}``, drop = clean - attacked)
    and the settings. With ``defend`` both inputs pass through :func:`defended` first.
    ``clean``: the metrics on ``records`` (defended if ``defend``) when already known."""
    attacked = attack_records(records, attack, rate, seed)
    if defend:
        attacked = defended(attacked)
    if clean is None:
        clean = predictor.evaluate(defended(records) if defend else records)["metrics"]
    hit = predictor.evaluate(attacked)["metrics"]
    return {"attack": attack, "rate": float(rate), "seed": seed, "defend": defend,
            "n": len(records), "clean": clean, "attacked": hit,
            "drop": {k: clean[k] - hit[k] for k in clean}}
