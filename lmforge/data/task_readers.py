"""Task data in and out: classification (JSONL/CSV/TSV), NER (CoNLL, JSONL with character
spans) and relations (OpenNRE JSONL), as the plain dicts the fine-tuning engine consumes.

Records
-------
* classification ``{"text", "label", "text_b"?, ...}``: the other fields of the row are
  kept (a field that has the name of a canonical one, e.g. ``text`` when
  ``text_field="sentence"``, gives way to it). JSON integer labels become strings.
* NER ``{"text", "tokens", "offsets", "tags", "spans"}`` (:mod:`lmforge.data.conll`
  defines them and how CoNLL tokens are joined into text).
* relations ``{"text", "h": {"name", "pos": [s, e]}, "t": {...}, "relation"}``, ``pos``
  in characters of ``text`` (``e`` exclusive).

Every record read from a file also holds ``"_line"``, the 1-based line where it starts,
so that later checks (:func:`check_labels`) can name it; the writers leave it out.

Errors
------
Every mistake in a file raises :class:`~lmforge.errors.DataError` with one line naming
the file and line (``data.jsonl:line 7: ...``): invalid JSON or UTF-8, a missing field
(the fields present are listed), an empty text or token list, token and tag counts that
differ, a bad or illegal tag, a span outside the text, not matching its text, overlapping
another or not on token boundaries, a CSV/TSV header without the field, an empty file.
An empty file has no line to name; its message names the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_text
from .conll import (
    CJK_RANGES,
    char_spans,
    check_tag,
    convert_conll,
    numbered_lines,
    read_conll,
    resolve_tags,
    tokens_to_text,
    write_conll,
)
from .readers import (
    _SURROGATE,
    _SURROGATE_ESCAPE,
    _csv_problem,
    _json_type,
    csv_rows,
    parse_json_line,
)
from .tags import normalize_scheme, tags_from_spans

__all__ = ["read_classification", "write_classification", "read_conll", "write_conll",
           "convert_conll", "read_ner_jsonl", "write_ner_jsonl", "read_relations",
           "write_relations", "check_labels", "auto_tokenize"]

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
LINE = "_line"
# One CJK character, a run of other word characters, or any other non-space character.
_AUTO_TOKEN = re.compile(f"[{CJK_RANGES}]|[^\\W{CJK_RANGES}]+|\\S")


# ----------------------------------------------------------------------------- helpers


def _empty(p: Path, example: str, what: str = "empty file") -> DataError:
    return DataError(f"{p}: {what}, no records (expected {example})")


def _json_objects(p: Path) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` for each non-blank line of a JSONL file."""
    seen = False
    for n, line in numbered_lines(p):
        if not line.strip():
            continue
        obj = parse_json_line(p, n, line)
        if not isinstance(obj, dict):
            raise DataError(f"{p}:line {n}: expected a JSON object, got {_json_type(obj)}")
        if _SURROGATE_ESCAPE.search(line) and (
                bad := _SURROGATE.search(json.dumps(obj, ensure_ascii=False))):
            raise DataError(f"{p}:line {n}: holds the unpaired surrogate "
                            f"\\u{ord(bad.group()):04x}, which is not valid Unicode")
        seen = True
        yield n, obj
    if not seen:
        raise _empty(p, "one JSON object per line")


def _missing(obj: dict, field: str, where: str, hint: str = "") -> DataError:
    keys = ", ".join(map(str, obj)) or "none"
    return DataError(f"{where}: field {field!r} is missing (fields: {keys}){hint}")


def _get(obj: dict, field: str, where: str) -> Any:
    if field not in obj:
        raise _missing(obj, field, where)
    return obj[field]


def _text(obj: dict, field: str, where: str) -> str:
    value = _get(obj, field, where)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is {_json_type(value)}, expected a string")
    if not value.strip():
        raise DataError(f"{where}: field {field!r} is empty, expected non-empty text")
    return value


def _str_list(obj: dict, field: str, where: str) -> list[str]:
    value = _get(obj, field, where)
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise DataError(f"{where}: field {field!r} must be a list of non-empty strings")
    if not value:
        raise DataError(f"{where}: field {field!r} is an empty list, expected tokens")
    return value


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> None:
    lines = (json.dumps({k: v for k, v in r.items() if k != LINE}, ensure_ascii=False)
             for r in records)
    write_text(path, "".join(line + "\n" for line in lines))


# ----------------------------------------------------------------------------- classification


def _format(p: Path, format: str | None) -> str:
    if format is None:
        if p.suffix.lower() not in FORMATS:
            raise DataError(f"{p}: unknown suffix {p.suffix!r}; expected one of "
                            f"{', '.join(FORMATS)} (or give format=jsonl|csv|tsv)")
        return FORMATS[p.suffix.lower()]
    if format not in ("jsonl", "csv", "tsv"):
        raise ConfigError(f"format={format!r} is not one of jsonl, csv, tsv")
    return format


def _table_rows(p: Path, fmt: str, needed: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """``(line, {column: value})`` for each row of a CSV (quoted fields as usual) or TSV
    file (fields taken literally, as in GLUE's files: a tab or newline cannot be inside
    one); the header must hold every ``needed`` column once."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    kw: dict = ({"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv"
                else {"strict": True})
    reader = csv.reader((line for _, line in numbered_lines(p)), **kw)
    seen = False
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise DataError(f"{p}:line 1: malformed {fmt.upper()} ({_csv_problem(e)})") from None
    if not header:
        raise _empty(p, "a header row naming the columns, then one row per example")
    for field in needed:
        if field not in header:
            raise DataError(f"{p}:line 1: column {field!r} is not in the header "
                            f"(columns: {', '.join(header)})")
        if header.count(field) > 1:
            raise DataError(f"{p}:line 1: column {field!r} appears "
                            f"{header.count(field)} times in the header")
    for line, row in csv_rows(reader, len(header), p, fmt.upper()):
        seen = True
        yield line, dict(zip(header, row, strict=True))
    if not seen:
        raise _empty(p, "rows after the header", "only a header")


def _label(value: object, field: str, where: str) -> str:
    if _is_int(value):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is {_json_type(value)}, expected a string "
                        "or an integer")
    if not value.strip():
        raise DataError(f"{where}: field {field!r} is empty, expected a label")
    return value


def read_classification(path: str | os.PathLike, *, text_field: str = "text",
                        label_field: str = "label", text_b_field: str | None = None,
                        format: str | None = None, require_label: bool = True
                        ) -> list[dict]:
    """Labelled texts (or text pairs with ``text_b_field``) from JSONL, CSV or TSV.

    ``format`` None picks by suffix (``.jsonl``/``.json``: JSON lines, ``.csv``, ``.tsv``).
    With ``require_label=False`` (texts to predict) a missing, null or empty label is left
    out of the record.
    """
    p = Path(path)
    fmt = _format(p, format)
    fields = [f for f in (text_field, text_b_field) if f is not None]
    needed = fields + ([label_field] if require_label else [])
    rows = _json_objects(p) if fmt == "jsonl" else _table_rows(p, fmt, needed)
    out = []
    for n, row in rows:
        where = f"{p}:line {n}"
        rec = {"text": _text(row, text_field, where)}
        if text_b_field is not None:
            rec["text_b"] = _text(row, text_b_field, where)
        if require_label:
            rec["label"] = _label(_get(row, label_field, where), label_field, where)
        elif row.get(label_field) not in (None, ""):
            rec["label"] = _label(row[label_field], label_field, where)
        for k, v in row.items():
            if k not in (text_field, text_b_field, label_field):
                rec.setdefault(k, v)
        rec[LINE] = n
        out.append(rec)
    return out


def write_classification(records: Iterable[dict], path: str | os.PathLike, *,
                         format: str | None = None) -> None:
    """Write classification records as JSONL, CSV or TSV (by suffix), atomically. Table
    columns: ``text``, ``text_b``, ``label`` (those present), then the other fields in the
    order first seen; a missing value is written empty."""
    p = Path(path)
    fmt = _format(p, format)
    recs = [{k: v for k, v in r.items() if k != LINE} for r in records]
    if fmt == "jsonl":
        _write_jsonl(recs, p)
        return
    first = [k for k in ("text", "text_b", "label") if any(k in r for r in recs)]
    header = list(dict.fromkeys(first + [k for r in recs for k in r]))
    rows = [header] + [["" if r.get(k) is None else str(r[k]) for k in header] for r in recs]
    if fmt == "tsv":  # fields as they are, no quoting (what _table_rows reads)
        for i, row in enumerate(rows[1:], 1):
            if any(("\t" in v or "\n" in v or "\r" in v) for v in row):
                raise DataError(f"cannot write {p}: record {i} has a tab or line break in "
                                "a field, which TSV cannot hold (write .csv or .jsonl)")
        write_text(p, "".join("\t".join(row) + "\n" for row in rows))
        return
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    write_text(p, buf.getvalue())


# ----------------------------------------------------------------------------- NER JSONL


def auto_tokenize(text: str) -> list[str]:
    """Words and punctuation for English, one token per character for Chinese: each CJK
    character is a token, so is each run of other word characters (letters, digits, ``_``)
    and each other non-space character (``"Obama's 2 猫."`` -> ``Obama ' s 2 猫 .``)."""
    return _AUTO_TOKEN.findall(text)


def _align(text: str, tokens: Sequence[str], where: str) -> list[list[int]]:
    """Character offsets of ``tokens`` in ``text``: in order, separated only by spaces,
    covering every other character."""
    offsets, pos = [], 0
    for k, tok in enumerate(tokens, 1):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith(tok, pos):
            raise DataError(f"{where}: token {k} {tok!r} does not match the text at "
                            f"character {pos} ({text[pos:pos + len(tok)]!r})")
        offsets.append([pos, pos + len(tok)])
        pos += len(tok)
    if text[pos:].strip():
        raise DataError(f"{where}: the text after the last token ({text[pos:][:20]!r}) "
                        "is not covered by tokens")
    return offsets


def _offsets(obj: dict, text: str, tokens: list[str], where: str) -> list[list[int]]:
    given = obj.get("offsets")
    if given is None:
        return _align(text, tokens, where)
    if not (isinstance(given, list) and len(given) == len(tokens)):
        raise DataError(f"{where}: field 'offsets' must hold one [start, end] per token "
                        f"({len(tokens)})")
    for k, (off, tok) in enumerate(zip(given, tokens, strict=True), 1):
        if not (isinstance(off, list) and len(off) == 2 and all(map(_is_int, off))
                and text[off[0]:off[1]] == tok and off[0] >= 0):
            raise DataError(f"{where}: offsets {off!r} of token {k} {tok!r} do not give "
                            "that token in the text")
    return [list(o) for o in given]


def _spans(obj: dict, text: str, where: str) -> list[tuple[int, int, str]]:
    """The record's ``spans`` (``{"start", "end", "label", "text"?}`` or ``[start, end,
    label]``) checked: inside the text, matching their ``text``, not overlapping."""
    if "spans" not in obj:
        raise _missing(obj, "spans", where, "; expected character spans (or 'tags')")
    value = obj["spans"]
    if not isinstance(value, list):
        raise DataError(f"{where}: field 'spans' is {_json_type(value)}, expected a list")
    out = []
    for i, span in enumerate(value, 1):
        if isinstance(span, list) and len(span) == 3:
            span = dict(zip(("start", "end", "label"), span, strict=True))
        if not (isinstance(span, dict) and _is_int(span.get("start"))
                and _is_int(span.get("end")) and isinstance(span.get("label"), str)
                and span["label"].strip()):
            raise DataError(f"{where}: span {i} {span!r} is not {{\"start\": int, \"end\": "
                            "int, \"label\": str}")
        s, e = span["start"], span["end"]
        if not 0 <= s < e <= len(text):
            raise DataError(f"{where}: span {i} [{s}, {e}) is outside the text (length "
                            f"{len(text)}) or empty; expected 0 <= start < end <= length")
        if "text" in span and span["text"] != text[s:e]:
            raise DataError(f"{where}: span {i} text {span['text']!r} does not match "
                            f"text[{s}:{e}] = {text[s:e]!r}")
        out.append((s, e, span["label"]))
    out.sort()
    for (s1, e1, _), (s2, e2, _) in pairwise(out):
        if s2 < e1:
            raise DataError(f"{where}: spans [{s1}, {e1}) and [{s2}, {e2}) overlap (one tag "
                            "per token cannot hold nested or overlapping entities)")
    return out


def _tags_from_char_spans(spans: list[tuple[int, int, str]], offsets: list[list[int]],
                          text: str, scheme: str, where: str) -> list[str]:
    starts = {s: k for k, (s, _) in enumerate(offsets)}
    ends = {e: k for k, (_, e) in enumerate(offsets)}
    token_spans = []
    for s, e, label in spans:
        if s not in starts or e not in ends:
            raise DataError(f"{where}: span [{s}, {e}) {text[s:e]!r} does not fall on token "
                            "boundaries (it cuts a token; fix the span or the tokens)")
        token_spans.append((label, starts[s], ends[e] + 1))
    return tags_from_spans(token_spans, len(offsets), scheme)


def read_ner_jsonl(path: str | os.PathLike, *, scheme: str = "IOB2",
                   tokenize: Callable[[str], list[str]] | None = None,
                   input_scheme: str | None = None, on_illegal: str = "repair"
                   ) -> list[dict]:
    """NER records from JSONL lines ``{"text", "spans"}`` (+ ``tokens``, ``offsets``,
    ``tags`` optional; other fields are kept), tags in ``scheme``.

    Tokens missing: ``tokenize(text)`` (default :func:`auto_tokenize`), aligned to the
    text. Tags missing: derived from the spans, which must fall on token boundaries. Tags
    given: read like CoNLL tags (``input_scheme`` detected when None, ``on_illegal``);
    with spans too, the two must agree.
    """
    p = Path(path)
    scheme = normalize_scheme(scheme)
    split = tokenize or auto_tokenize
    recs, given = [], []  # given: indices of records whose tags come from the file
    for n, obj in _json_objects(p):
        where = f"{p}:line {n}"
        text = _text(obj, "text", where)
        if "tokens" in obj:
            tokens = _str_list(obj, "tokens", where)
            offsets = _offsets(obj, text, tokens, where)
        else:
            tokens = list(split(text))
            offsets = _align(text, tokens, f"{where} (tokenizer output)")
        spans = _spans(obj, text, where) if "spans" in obj or "tags" not in obj else None
        if "tags" in obj:
            tags = obj["tags"]
            if not isinstance(tags, list) or len(tags) != len(tokens):
                count = len(tags) if isinstance(tags, list) else _json_type(tags)
                raise DataError(f"{where}: {len(tokens)} tokens but {count} tags; expected "
                                "one tag per token")
            tags = [check_tag(t, f"{where}: token {k}") for k, t in enumerate(tags, 1)]
            given.append(len(recs))
        else:
            tags = _tags_from_char_spans(spans, offsets, text, scheme, where)
        rec = {"text": text, "tokens": tokens, "offsets": offsets, "tags": tags,
               "spans": spans}
        rec.update((k, v) for k, v in obj.items() if k not in rec)
        rec[LINE] = n
        recs.append(rec)
    if given:
        fixed = resolve_tags([recs[i]["tags"] for i in given],
                             lambda i, k: f"{p}:line {recs[given[i]][LINE]}",
                             scheme=scheme, input_scheme=input_scheme,
                             on_illegal=on_illegal, path=p)
        for i, tags in zip(given, fixed, strict=True):
            recs[i]["tags"] = tags
    for rec in recs:
        found = char_spans(rec["text"], rec["offsets"], rec["tags"], scheme)
        if rec["spans"] is not None and rec["spans"] != [(d["start"], d["end"], d["label"])
                                                         for d in found]:
            raise DataError(f"{p}:line {rec[LINE]}: the tags and the spans disagree (tags "
                            f"give {[(d['start'], d['end'], d['label']) for d in found]}, "
                            f"spans {rec['spans']})")
        rec["spans"] = found
    return recs


def write_ner_jsonl(records: Iterable[dict], path: str | os.PathLike) -> None:
    """Write NER records as JSON lines (``text``, ``tokens``, ``offsets``, ``tags``,
    ``spans`` and any other fields), atomically."""
    _write_jsonl(records, path)


# ----------------------------------------------------------------------------- relations


def _squash(s: str) -> str:
    return "".join(s.split()).casefold()


def _entity(obj: dict, key: str, text: str, offsets: list[list[int]] | None,
            where: str) -> dict:
    """Head or tail entity with ``pos`` in characters of ``text`` (from token indices
    when ``offsets`` is given); its ``name``, if any, must be the text at ``pos`` (case
    and spaces aside: OpenNRE's wiki80 lowercases names)."""
    ent = _get(obj, key, where)
    if not isinstance(ent, dict):
        raise DataError(f"{where}: field {key!r} is {_json_type(ent)}, expected an object "
                        "with 'name' and 'pos'")
    pos = _get(ent, "pos", f"{where}: entity {key!r}")
    size = len(text) if offsets is None else len(offsets)
    unit = "characters" if offsets is None else "tokens"
    if not (isinstance(pos, list) and len(pos) == 2 and all(map(_is_int, pos))
            and 0 <= pos[0] < pos[1] <= size):
        raise DataError(f"{where}: entity {key!r} pos {pos!r} is outside the text ({size} "
                        f"{unit}); expected [start, end] with 0 <= start < end <= {size}")
    s, e = pos if offsets is None else (offsets[pos[0]][0], offsets[pos[1] - 1][1])
    name = ent.get("name", text[s:e])
    if not isinstance(name, str) or _squash(name) != _squash(text[s:e]):
        raise DataError(f"{where}: entity {key!r} name {name!r} does not match the text at "
                        f"pos {pos} ({text[s:e]!r})")
    return {**ent, "name": name, "pos": [s, e]}


def read_relations(path: str | os.PathLike, *, negative: str | None = "no_relation",
                   require_relation: bool = True) -> list[dict]:
    """Relation records from OpenNRE JSONL: ``{"text" | "token", "h", "t", "relation"}``.

    The ``token`` variant (``pos`` in token indices) becomes text + character ``pos`` (the
    tokens joined as in :func:`~lmforge.data.conll.tokens_to_text`). A ``relation`` of
    ``null`` or ``""`` is ``negative`` (the no-relation class; with ``negative=None`` it is
    an error). With ``require_relation=False`` a missing relation is left out.
    """
    p = Path(path)
    out = []
    for n, obj in _json_objects(p):
        where = f"{p}:line {n}"
        if "text" in obj:
            text, offsets = _text(obj, "text", where), None
        elif "token" in obj:
            text, offsets = tokens_to_text(_str_list(obj, "token", where))
        else:
            raise _missing(obj, "text", where, "; expected 'text' or 'token' (a token list)")
        rec = {"text": text, "h": _entity(obj, "h", text, offsets, where),
               "t": _entity(obj, "t", text, offsets, where)}
        if "relation" in obj or require_relation:
            rel = _get(obj, "relation", where)
            if rel in (None, "") and negative is not None:
                rel = negative
            rec["relation"] = _label(rel, "relation", where)
        rec.update((k, v) for k, v in obj.items() if k not in rec and k != "token")
        rec[LINE] = n
        out.append(rec)
    return out


def write_relations(records: Iterable[dict], path: str | os.PathLike) -> None:
    """Write relation records as OpenNRE JSON lines (the ``text`` variant), atomically."""
    _write_jsonl(records, path)


# ----------------------------------------------------------------------------- labels


def check_labels(records: Sequence[dict], field: str = "label", *,
                 known: Iterable[str] | None = None, min_count: int = 2,
                 path: str | os.PathLike | None = None) -> dict[str, int]:
    """Check the labels of ``records`` and return how often each occurs (sorted).

    Training (``known`` None): a label with fewer than ``min_count`` examples is an error
    (one example cannot be both learned and checked; often it is a typo). Evaluation:
    a label not in ``known`` (the model's labels) is an error listing them. Errors name
    ``path`` and the record's line (``"_line"``; else its 1-based index). ``field`` may
    hold a string (``label``, ``relation``) or a list of strings or spans (``tags``,
    ``spans``: each tag or span label counts; for NER, check ``spans``, whose entity
    types are what must recur, not ``tags``, where e.g. ``I-X`` may rightly be rare).
    """
    def where(i: int, rec: dict) -> str:
        at = f":line {rec[LINE]}" if LINE in rec else f": record {i}"
        return f"{path}{at}" if path is not None else at[2:]

    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for i, rec in enumerate(records, 1):
        value = _get(rec, field, where(i, rec))
        for item in value if isinstance(value, list) else [value]:
            label = item.get("label") if isinstance(item, dict) else item
            if not isinstance(label, str):
                raise DataError(f"{where(i, rec)}: label {label!r} in field {field!r} is "
                                "not a string")
            counts[label] += 1
            first.setdefault(label, where(i, rec))
    if known is not None:
        known = list(known)
        allowed = set(known)
        for label, at in first.items():
            if label not in allowed:
                shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)"
                                                 if len(known) > 30 else "")
                raise DataError(f"{at}: label {label!r} is not one the model knows (known "
                                f"labels: {shown})")
    else:
        rare = [label for label in first if counts[label] < min_count]
        if rare:
            label = rare[0]
            more = f"; {len(rare) - 1} more label(s) are as rare" if len(rare) > 1 else ""
            raise DataError(f"{first[label]}: label {label!r} has {counts[label]} example(s), "
                            f"training needs at least {min_count} of each label (a typo?)"
                            f"{more}")
    return dict(sorted(counts.items()))
