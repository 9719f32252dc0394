"""CoNLL files for sequence labelling (NER), and the token/tag machinery of the NER readers.

Format (CoNLL-2003)::

    -DOCSTART- -X- -X- O

    EU NNP B-NP B-ORG
    rejects VBZ B-VP O

One token per line: the token, optional middle columns (POS, chunk), the tag last (other
places are chosen with ``token_col``/``tag_col``); columns are separated by spaces or tabs;
a blank line ends a sentence. ``-DOCSTART-`` lines separate documents and are skipped; the
sentence after one gets ``"doc_start": True`` so that :func:`write_conll` puts it back.
Every token line of a file must have as many columns as the first: a line with a column
missing would otherwise be read with a POS or chunk tag as its entity tag.

A sentence becomes the record ``{"text", "tokens", "offsets", "tags", "spans", "_line"}``
(+ ``"columns"``, the middle columns of each token, when the file has them):

* **text** is the tokens joined by ``" "``, or by ``""`` when every token is one character
  and at least one of them is CJK (character-level Chinese, where digits and Latin
  letters also stand one per line: ``1 9 9 8 年`` is ``"1998年"``); :func:`tokens_to_text`.
* **offsets** ``[[s, e], ...]``: token ``k`` is ``text[s:e]``.
* **spans** ``[{"start", "end", "label", "text"}]``: the entities in character offsets
  (``end`` exclusive), ``text == record["text"][start:end]``.
* **_line**: the 1-based line of the sentence's first token (error messages name it).

Tag schemes (:mod:`lmforge.data.tags`): IOB1 (a chunk starts with ``I-``; ``B-`` only
splits two adjacent chunks of one type), IOB2 = BIO (every chunk starts with ``B-``) and
BIOES (``S-`` single-token chunks, ``E-`` chunk ends). The scheme of a file's tags is
given (``input_scheme``) or detected (:func:`detect_scheme`), and tags are converted to
``scheme``. An illegal sequence (``O I-PER`` in IOB2, ``B-PER I-LOC``) is an error with
``on_illegal="error"``; with ``"repair"`` (default) it is repaired the conlleval way (a
chunk that starts illegally is read as a chunk start) and one ``UserWarning`` per file
gives the number of illegal tags and the first place.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_text
from .readers import _strip_eol, iter_lines
from .tags import (
    convert_tags,
    normalize_scheme,
    repair_tags,
    spans_from_tags,
    split_tag,
    tag_errors,
)

DOCSTART = "-DOCSTART-"
ON_ILLEGAL = ("repair", "error")
# CJK radicals, symbols and punctuation, kana, bopomofo, ideographs (+ extension A and the
# compatibility block), compatibility forms, full-width forms, ideograph extensions B-G.
CJK_RANGES = ("\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff"
              "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
              "\U00020000-\U0003134f")
_CJK = re.compile(f"[{CJK_RANGES}]")

Where = Callable[[int, int], str]  # (sequence index, token index) -> "FILE:line N"


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(n, line)`` for each line of a UTF-8 file, ``n`` 1-based, the line with its
    ending. A missing file or invalid UTF-8 raises :class:`DataError` naming the file
    (and, for invalid UTF-8, the line and byte offset)."""
    n = 0
    try:
        for n, line in enumerate(iter_lines(path), 1):
            yield n, line
    except DataError as e:
        msg, head = str(e), f"{path} is not valid UTF-8"
        if msg.startswith(head):  # iter_lines names the byte offset; add the line
            raise DataError(f"{path}:line {n + 1}: not valid UTF-8{msg[len(head):]}"
                            ) from None
        raise


def tokens_to_text(tokens: Sequence[str]) -> tuple[str, list[list[int]]]:
    """``(text, offsets)``: the tokens joined by ``""`` when each is one character and at
    least one is CJK, else by ``" "``; ``offsets[k] = [s, e]`` with ``text[s:e] ==
    tokens[k]``."""
    sep = "" if (all(len(t) == 1 for t in tokens) and any(_CJK.match(t) for t in tokens)
                 ) else " "
    offsets, pos = [], 0
    for t in tokens:
        offsets.append([pos, pos + len(t)])
        pos += len(t) + len(sep)
    return sep.join(tokens), offsets


def check_tag(tag: object, where: str) -> str:
    """``tag`` if it is ``O`` or ``PREFIX-TYPE``; else a :class:`DataError` at ``where``."""
    try:
        if not isinstance(tag, str):
            raise ValueError
        split_tag(tag)
    except ValueError:
        raise DataError(f"{where}: bad tag {tag!r} (expected O or B-, I-, E-, S- and a type, "
                        "e.g. B-PER)") from None
    return tag


def detect_scheme(seqs: Iterable[Sequence[str]]) -> str:
    """The scheme of (valid) tag sequences: ``BIOES`` if an ``E-``/``S-`` tag occurs;
    ``IOB1`` if some chunk starts with ``I-`` (at the start, after ``O`` or after another
    type) and no ``B-X`` follows anything but a tag of type X; else ``IOB2``. Exact for
    legal sequences; a few stray errors in an IOB2 file leave it IOB2."""
    i_start = b_start = False
    for tags in seqs:
        prev = None  # type of the previous tag; None after O and at the start
        for tag in tags:
            prefix, typ = split_tag(tag)
            if prefix in ("E", "S"):
                return "BIOES"
            i_start |= prefix == "I" and typ != prev
            b_start |= prefix == "B" and typ != prev
            prev = typ
    return "IOB1" if i_start and not b_start else "IOB2"


def resolve_tags(seqs: list[list[str]], where: Where, *, scheme: str,
                 input_scheme: str | None, on_illegal: str, path: Path | str,
                 hint: str = "; fix the tags, or read with on_illegal='repair'"
                 ) -> list[list[str]]:
    """The sequences, legal and in ``scheme``: read in ``input_scheme`` (detected when
    None), illegal ones repaired (one warning) or reported (:class:`DataError` ending with
    ``hint``)."""
    if on_illegal not in ON_ILLEGAL:
        raise ConfigError(f"on_illegal={on_illegal!r} is not one of {', '.join(ON_ILLEGAL)}")
    scheme = normalize_scheme(scheme)
    src = normalize_scheme(input_scheme) if input_scheme else detect_scheme(seqs)
    out, bad, first = [], 0, ""
    for i, tags in enumerate(seqs):
        errors = tag_errors(tags, src)
        if errors:
            pos, reason = errors[0]
            msg = f"{where(i, pos)}: illegal {src} tag sequence at token {pos + 1}: {reason}"
            if on_illegal == "error":
                raise DataError(msg + hint)
            bad += len(errors)
            first = first or msg
            tags = repair_tags(tags, src)
        out.append(list(tags) if src == scheme else convert_tags(tags, src, scheme))
    if bad:
        warnings.warn(f"{path}: repaired {bad} illegal {src} tag(s), the first: {first}",
                      stacklevel=3)
    return out


def char_spans(text: str, offsets: Sequence[Sequence[int]], tags: Sequence[str],
               scheme: str) -> list[dict]:
    """The entities of a legal tag sequence as ``{"start", "end", "label", "text"}`` in
    character offsets of ``text`` (``end`` exclusive)."""
    out = []
    for label, s, e in spans_from_tags(tags, scheme):
        start, end = offsets[s][0], offsets[e - 1][1]
        out.append({"start": start, "end": end, "label": label, "text": text[start:end]})
    return out


def _columns(ncols: int, token_col: int, tag_col: int) -> tuple[int, int] | None:
    """Indices of the token and tag columns in a line of ``ncols`` (None if impossible)."""
    ti = token_col + ncols if token_col < 0 else token_col
    gi = tag_col + ncols if tag_col < 0 else tag_col
    ok = 0 <= ti < ncols and 0 <= gi < ncols and ti != gi
    return (ti, gi) if ok else None


def read_conll(path: str | os.PathLike, *, token_col: int = 0, tag_col: int = -1,
               scheme: str = "IOB2", input_scheme: str | None = None,
               on_illegal: str = "repair") -> list[dict]:
    """The sentences of a CoNLL file as NER records (see the module docstring), tags in
    ``scheme``."""
    p = Path(path)
    sents: list[dict] = []
    lines: list[list[int]] = []  # per sentence, the line of each token
    ncols, first, doc_start = 0, 0, False
    cur: dict | None = None
    for n, raw in numbered_lines(p):
        cols = raw.split()
        if not cols or cols[0] == DOCSTART:
            cur = None
            doc_start |= bool(cols)
            continue
        if not ncols:
            ncols, first = len(cols), n
            idx = _columns(ncols, token_col, tag_col)
            if idx is None:
                raise DataError(f"{p}:line {n}: {ncols} column(s) in {_strip_eol(raw)!r}, "
                                f"expected a token and a tag (token_col={token_col}, "
                                f"tag_col={tag_col})")
            ti, gi = idx
        elif len(cols) != ncols:
            raise DataError(f"{p}:line {n}: {len(cols)} column(s) in {_strip_eol(raw)!r}, "
                            f"expected {ncols} like line {first} (token ... tag)")
        if cur is None:
            cur = {"tokens": [], "tags": [], "columns": [], "_line": n}
            if doc_start:
                cur["doc_start"], doc_start = True, False
            sents.append(cur)
            lines.append([])
        cur["tokens"].append(cols[ti])
        cur["tags"].append(check_tag(cols[gi], f"{p}:line {n}"))
        cur["columns"].append([c for j, c in enumerate(cols) if j not in (ti, gi)])
        lines[-1].append(n)
    if not sents:
        raise DataError(f"{p}: empty file, no sentences (expected lines of a token and its "
                        "tag, e.g. 'EU B-ORG', with a blank line after each sentence)")
    seqs = resolve_tags([s["tags"] for s in sents], lambda i, k: f"{p}:line {lines[i][k]}",
                        scheme=scheme, input_scheme=input_scheme, on_illegal=on_illegal,
                        path=p)
    out = []
    for sent, tags in zip(sents, seqs, strict=True):
        text, offsets = tokens_to_text(sent["tokens"])
        rec = {"text": text, "tokens": sent["tokens"], "offsets": offsets, "tags": tags,
               "spans": char_spans(text, offsets, tags, scheme)}
        if ncols > 2:
            rec["columns"] = sent["columns"]
        if sent.get("doc_start"):
            rec["doc_start"] = True
        rec["_line"] = sent["_line"]
        out.append(rec)
    return out


def _record_tokens(rec: object, where: str) -> tuple[list[str], list[str]]:
    """The tokens and tags of a record to write, checked."""
    if not isinstance(rec, dict) or "tokens" not in rec or "tags" not in rec:
        raise DataError(f"{where}: expected a record with 'tokens' and 'tags'")
    tokens, tags = rec["tokens"], rec["tags"]
    if not tokens:
        raise DataError(f"{where}: the token list is empty")
    for k, t in enumerate(tokens, 1):
        if not isinstance(t, str) or not t or len(t.split()) != 1:
            raise DataError(f"{where}: token {k} {t!r} is not one word without spaces")
    if len(tags) != len(tokens):
        raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    return list(tokens), [check_tag(t, where) for t in tags]


def write_conll(records: Iterable[dict], path: str | os.PathLike, scheme: str = "IOB2"
                ) -> None:
    """Write NER records (``tokens`` and ``tags``, optional ``columns`` and ``doc_start``)
    as a CoNLL file, atomically: ``token [columns...] tag`` per line, a blank line after
    each sentence. The records' tag scheme is detected and converted to ``scheme``."""
    p = Path(path)
    recs = list(records)
    where = [f"cannot write {p}: record {i}" for i in range(1, len(recs) + 1)]
    pairs = [_record_tokens(r, w) for r, w in zip(recs, where, strict=True)]
    seqs = resolve_tags([tags for _, tags in pairs], lambda i, k: where[i], scheme=scheme,
                        input_scheme=None, on_illegal="error", path=p, hint="")
    width = None
    parts: list[str] = []
    for rec, w, (tokens, _), tags in zip(recs, where, pairs, seqs, strict=True):
        columns = rec.get("columns") or [[] for _ in tokens]
        if len(columns) != len(tokens) or any(
                not isinstance(c, list) or any(not isinstance(x, str) or len(x.split()) != 1
                                               for x in c) for c in columns):
            raise DataError(f"{w}: 'columns' must hold one list of words per token")
        for c in columns:
            if width is None:
                width = len(c)
            elif len(c) != width:
                raise DataError(f"{w}: {len(c)} middle column(s), earlier records have "
                                f"{width}")
        if rec.get("doc_start"):
            parts.append(" ".join([DOCSTART] + ["-X-"] * (width or 0) + ["O"]) + "\n\n")
        rows = zip(tokens, columns, tags, strict=True)
        parts.extend(" ".join([t, *c, g]) + "\n" for t, c, g in rows)
        parts.append("\n")
    write_text(p, "".join(parts))


def convert_conll(src: str | os.PathLike, dst: str | os.PathLike, *, to_scheme: str,
                  input_scheme: str | None = None, on_illegal: str = "repair") -> int:
    """Rewrite the CoNLL file ``src`` as ``dst`` with its tags in ``to_scheme`` (middle
    columns and ``-DOCSTART-`` lines kept); returns the number of sentences."""
    records = read_conll(src, scheme=to_scheme, input_scheme=input_scheme,
                         on_illegal=on_illegal)
    write_conll(records, dst, scheme=to_scheme)
    return len(records)
