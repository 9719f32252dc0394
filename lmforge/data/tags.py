"""Tag schemes for sequence labelling: IOB1, IOB2 (BIO) and BIOES (IOBES).

A tagger labels each token with a *tag*: ``O`` (outside any entity) or a prefix and an
entity type joined by ``-`` (``B-PER``). The scheme says which prefixes exist and where
they may stand. Entities are kept as *spans* ``(type, start, end)`` over token positions,
``end`` exclusive.

- **IOB1** (Ramshaw & Marcus 1995; the original CoNLL-2003 files): every entity token is
  ``I-X``; ``B-X`` appears only on the first token of an entity that *immediately
  follows another entity of the same type*, where ``I-X`` alone could not show the cut.
  Rule: ``B-X`` may follow only ``B-X`` or ``I-X``.
- **IOB2** (BIO): every entity starts with ``B-X`` and continues with ``I-X``.
  Rule: ``I-X`` may follow only ``B-X`` or ``I-X``; it never starts a sentence.
- **BIOES** (IOBES): a one-token entity is ``S-X``; a longer one is ``B-X I-X* E-X``.
  Rules: after ``B-X`` or ``I-X`` comes ``I-X`` or ``E-X`` (never the sentence end); after
  ``O``, ``E-*``, ``S-*`` or at the start comes ``O``, ``B-*`` or ``S-*``.

Examples (the third line has three adjacent place names, 北京 上海 广州)::

    tokens  Barack  Obama  visited  New    York
    IOB1    I-PER   I-PER  O        I-LOC  I-LOC
    IOB2    B-PER   I-PER  O        B-LOC  I-LOC
    BIOES   B-PER   E-PER  O        B-LOC  E-LOC

    tokens  他      去过    北京    上海    广州
    IOB1    O       O       I-LOC   B-LOC   B-LOC
    IOB2    O       O       B-LOC   B-LOC   B-LOC
    BIOES   O       O       S-LOC   S-LOC   S-LOC

Spans: ``[("PER", 0, 2), ("LOC", 3, 5)]`` and ``[("LOC", 2, 3), ("LOC", 3, 4), ("LOC", 4, 5)]``.

Model output is often illegal (``O I-PER``). :func:`lenient_spans` reads *any* tag
sequence the way conlleval does (and seqeval's default mode, which copies it); reading
the previous tag ``p`` and the current tag ``c`` left to right:

- an open chunk ends before ``c`` when ``p`` is ``E-``/``S-``, or ``c`` is ``B-``/``S-``/``O``,
  or ``c`` has another type than the chunk;
- ``c`` opens a chunk when it is not ``O`` and no chunk is open (after the rule above).

So ``I-X`` after ``O`` or another type, and a stray ``E-X``, start a chunk; ``B-X E-X`` is
one chunk. :func:`repair_tags` rewrites a sequence as the legal tags of those chunks.
:func:`allowed_transitions` gives the masks a constrained Viterbi decoder needs so that it
never outputs an illegal sequence in the first place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEMES", "Span", "split_tag", "normalize_scheme", "tag_errors", "repair_tags",
           "lenient_spans", "spans_from_tags", "tags_from_spans", "convert_tags", "tag_set",
           "allowed_transitions"]

SCHEMES = ("IOB1", "IOB2", "BIOES")
#: ``(entity type, start token, end token)``, ``end`` exclusive.
Span = tuple[str, int, int]

_ALIASES = {"iob1": "IOB1", "iob2": "IOB2", "bio": "IOB2", "bioes": "BIOES", "iobes": "BIOES"}
_PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES"}  # entity prefixes besides O


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``.

    A tag is ``O`` or one of ``B I E S``, a ``-`` and a non-empty type (which may contain
    ``-`` itself); anything else raises ``ValueError``.
    """
    if tag == "O":
        return "O", None
    if isinstance(tag, str) and len(tag) > 2 and tag[0] in "BIES" and tag[1] == "-":
        return tag[0], tag[2:]
    raise ValueError(f"not a tag: {tag!r} (expected 'O' or B-/I-/E-/S- and a type, "
                     "e.g. 'B-PER')")


def normalize_scheme(name: str) -> str:
    """The canonical name of a scheme: ``bio``/``iob2`` -> ``IOB2``, ``iobes``/``bioes`` ->
    ``BIOES``, ``iob1`` -> ``IOB1`` (any case); anything else raises ``ConfigError``."""
    if isinstance(name, str) and name.lower() in _ALIASES:
        return _ALIASES[name.lower()]
    raise ConfigError(f"unknown tag scheme {name!r}; allowed: IOB1, IOB2 (or BIO), "
                      "BIOES (or IOBES)")


def _tag_error(tag: str, scheme: str) -> str | None:
    """Why ``tag`` can never appear in ``scheme`` (not a tag, or a foreign prefix)."""
    try:
        prefix, _ = split_tag(tag)
    except ValueError as e:
        return str(e)
    if prefix != "O" and prefix not in _PREFIXES[scheme]:
        return f"{tag} is not an {scheme} tag (it uses {', '.join(_PREFIXES[scheme])} and O)"
    return None


def _step_error(prev: str | None, cur: str | None, scheme: str) -> str | None:
    """Why ``cur`` may not follow ``prev`` in ``scheme``, or None when it may.

    ``prev=None`` asks whether ``cur`` may start a sentence, ``cur=None`` whether ``prev``
    may end one. Both tags must be valid in ``scheme``.
    """
    pp, pt = split_tag(prev) if prev is not None else ("O", None)
    cp, ct = split_tag(cur) if cur is not None else ("O", None)
    before = f"follow {prev}" if prev is not None else "start a sentence"
    continues = pp in ("B", "I") and pt == ct
    if scheme == "IOB2" and cp == "I" and not continues:
        return f"{cur} cannot {before} in IOB2 (I-{ct} continues B-{ct} or I-{ct})"
    if scheme == "IOB1" and cp == "B" and not continues:
        return (f"{cur} cannot {before} in IOB1 (B-{ct} starts an entity right after "
                f"another {ct} entity)")
    if scheme == "BIOES":
        if pp in ("B", "I") and not (cp in ("I", "E") and ct == pt):
            what = f"be followed by {cur}" if cur is not None else "end a sentence"
            return f"{prev} cannot {what} in BIOES (it needs I-{pt} or E-{pt} next)"
        if pp not in ("B", "I") and cp in ("I", "E"):
            return f"{cur} cannot {before} in BIOES (an entity starts with B- or S-)"
    return None


def tag_errors(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """``(position, reason)`` of every illegal tag and transition; ``[]`` when legal.

    A tag that is not a tag of ``scheme`` is reported at its position (and the transitions
    into and out of it are not checked); an illegal transition ``tags[i-1] -> tags[i]`` or
    start at ``i``; an illegal sentence end at the last position.
    """
    scheme = normalize_scheme(scheme)
    bad = [_tag_error(tag, scheme) for tag in tags]
    errors: list[tuple[int, str]] = []
    for i, tag in enumerate(tags):
        if bad[i] is not None:
            errors.append((i, bad[i]))
        elif i == 0 or bad[i - 1] is None:
            reason = _step_error(tags[i - 1] if i else None, tag, scheme)
            if reason is not None:
                errors.append((i, reason))
    if tags and bad[-1] is None:
        reason = _step_error(tags[-1], None, scheme)
        if reason is not None:
            errors.append((len(tags) - 1, reason))
    return errors


def lenient_spans(tags: Sequence[str]) -> list[Span]:
    """The chunks of any tag sequence (any mix of ``B I E S O``) read the conlleval way
    (see the module docstring); these are the chunks seqeval's default mode counts."""
    spans: list[Span] = []
    start, kind, prev = 0, None, "O"
    for i, tag in enumerate(tags):
        try:
            prefix, typ = split_tag(tag)
        except ValueError as e:
            raise ValueError(f"position {i}: {e}") from None
        if kind is not None and (prev in ("E", "S") or prefix in ("B", "S", "O") or typ != kind):
            spans.append((kind, start, i))
            kind = None
        if prefix != "O" and kind is None:
            start, kind = i, typ
        prev = prefix
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans


def repair_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """The legal ``scheme`` tags of the chunks :func:`lenient_spans` reads in ``tags``.

    An entity that starts illegally (``I-X`` after ``O`` or another type, a stray ``E-X``)
    becomes a well-formed one; a legal sequence comes back unchanged. Hence
    ``spans_from_tags(repair_tags(t, s), s) == lenient_spans(t)``.
    """
    return tags_from_spans(lenient_spans(tags), len(tags), normalize_scheme(scheme))


def spans_from_tags(tags: Sequence[str], scheme: str) -> list[Span]:
    """The entities of a legal ``scheme`` sequence, in order.

    Raises ``ValueError`` naming the first illegal position; call :func:`repair_tags`
    first on model output.
    """
    scheme = normalize_scheme(scheme)
    errors = tag_errors(tags, scheme)
    if errors:
        pos, reason = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"illegal {scheme} tags at position {pos}: {reason}{more}")
    return lenient_spans(tags)


def tags_from_spans(spans: Iterable[Span], n: int, scheme: str) -> list[str]:
    """The ``scheme`` tags of ``n`` tokens holding ``spans``.

    Raises ``ValueError`` for a span that is not ``(non-empty type, start, end)`` with
    ``0 <= start < end <= n``, or that overlaps another.
    """
    scheme = normalize_scheme(scheme)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    checked = []
    for span in spans:
        if not (isinstance(span, (tuple, list)) and len(span) == 3
                and isinstance(span[0], str) and span[0]
                and all(isinstance(x, int) and not isinstance(x, bool) for x in span[1:])):
            raise ValueError(f"not a span: {span!r} (expected (type, start, end))")
        if not 0 <= span[1] < span[2] <= n:
            raise ValueError(f"span {tuple(span)!r} is empty or outside 0..{n}")
        checked.append(tuple(span))
    tags = ["O"] * n
    last: Span | None = None
    for kind, start, end in sorted(checked, key=lambda s: (s[1], s[2])):
        if last is not None and start < last[2]:
            raise ValueError(f"spans {last!r} and {(kind, start, end)!r} overlap")
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{kind}"
        else:
            first = "B"
            if scheme == "IOB1" and not (last is not None and last[2] == start
                                         and last[0] == kind):
                first = "I"
            tags[start] = f"{first}-{kind}"
            tags[start + 1:end] = [f"I-{kind}"] * (end - start - 1)
            if scheme == "BIOES":
                tags[end - 1] = f"E-{kind}"
        last = (kind, start, end)
    return tags


def convert_tags(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Legal ``src`` tags rewritten in scheme ``dst`` (through their spans)."""
    return tags_from_spans(spans_from_tags(tags, src), len(tags), dst)


def tag_set(types: Iterable[str], scheme: str) -> list[str]:
    """Every tag of ``scheme`` over ``types``: ``"O"``, then for each type in sorted order
    ``B-, I-`` (IOB1/IOB2) or ``B-, I-, E-, S-`` (BIOES)."""
    scheme = normalize_scheme(scheme)
    kinds = sorted(set(types))
    for kind in kinds:
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"an entity type must be a non-empty string, got {kind!r}")
    return ["O"] + [f"{p}-{kind}" for kind in kinds for p in _PREFIXES[scheme]]


def allowed_transitions(labels: Sequence[str], scheme: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks for constrained decoding over ``labels`` (K tags).

    Returns ``start`` (K,): the tag may begin a sentence; ``follow`` (K, K):
    ``follow[i, j]`` is True when ``labels[j]`` may come right after ``labels[i]``;
    ``end`` (K,): the tag may end a sentence. A sequence ``y`` is legal (``tag_errors``
    is empty) exactly when ``start[y_1]``, every ``follow[y_t, y_{t+1}]`` and ``end[y_n]``
    hold. A label of another scheme (``E-X`` in IOB2) is never allowed; a string that is
    not a tag raises ``ValueError``.
    """
    import torch

    scheme = normalize_scheme(scheme)
    labels = list(labels)
    for label in labels:
        split_tag(label)
    ok = [label if _tag_error(label, scheme) is None else None for label in labels]

    def allowed(a: str | None, b: str | None) -> bool:
        return _step_error(a, b, scheme) is None

    start = [a is not None and allowed(None, a) for a in ok]
    end = [a is not None and allowed(a, None) for a in ok]
    follow = [[a is not None and b is not None and allowed(a, b) for b in ok] for a in ok]
    k = len(labels)
    return (torch.tensor(start, dtype=torch.bool).reshape(k),
            torch.tensor(follow, dtype=torch.bool).reshape(k, k),
            torch.tensor(end, dtype=torch.bool).reshape(k))
