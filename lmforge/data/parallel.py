"""Parallel data for translation: sentence pairs from TSV, JSONL or two line-aligned text
files, as the records ``{"src", "tgt"}`` (source and target text, as written).

Formats
-------
``tsv``    ``source<TAB>target`` per line, no header. Fields are taken literally (no
           quoting), so neither side can hold a tab or a line break. Lines that are empty
           or only spaces are skipped.
``jsonl``  one object per line, ``{"src": ..., "tgt": ...}`` or the Hugging Face
           ``datasets`` shape ``{"translation": {"en": ..., "de": ...}}`` (WMT, OPUS),
           whose keys are the language codes ``src_lang`` and ``tgt_lang``. Blank lines
           are skipped.
``text``   two files, ``path`` with the source lines and ``tgt_path`` with the target
           lines: line N of one translates line N of the other (Moses/OPUS
           ``train.en``/``train.de``). Here every line counts: an empty line is an error,
           since skipping it would pair each later line with the wrong translation.

``format`` None picks by suffix: ``.tsv``, ``.jsonl`` or ``.json``; with ``tgt_path``
given, ``text`` whatever the suffix.

As in :mod:`lmforge.data.task_readers`, every record read from a file also holds
``"_line"``, the 1-based line it comes from; the writer leaves it out.

Errors
------
Every mistake in a file raises :class:`~lmforge.errors.DataError` with one line naming
the file and line (``train.tsv:line 7: ...``): invalid UTF-8 or JSON, a TSV line without
exactly one tab, an empty side, a missing field or language (the ones present are
listed), an empty file, two text files of different lengths (both files and counts are
named). A bad argument (``format``, a language code, ``tgt_path`` with another format)
raises :class:`~lmforge.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_text
from .conll import numbered_lines
from .readers import _SURROGATE, _json_type, _strip_eol
from .task_readers import LINE, _empty, _json_objects, _missing, _text, _write_jsonl

__all__ = ["read_parallel", "write_parallel"]

FORMATS = ("tsv", "jsonl", "text")
_SUFFIXES = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}

Pairs = Iterator[tuple[int, str, str]]  # (line, source, target)


def _check_lang(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a language code such as 'en' or 'zh', got "
                          f"{value!r}")


def _format(p: Path, format: str | None, tgt_path: object) -> str:
    if format is None:
        if tgt_path is not None:
            return "text"
        if p.suffix.lower() == ".txt":
            raise ConfigError(f"{p} is a text file of one side: give tgt_path, the file of "
                              "target lines")
        if p.suffix.lower() not in _SUFFIXES:
            raise DataError(f"{p}: unknown suffix {p.suffix!r}; expected one of "
                            f"{', '.join(_SUFFIXES)}, or two text files with tgt_path (or "
                            "give format=tsv|jsonl|text)")
        return _SUFFIXES[p.suffix.lower()]
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if format == "text" and tgt_path is None:
        raise ConfigError("format='text' needs tgt_path, the file of target lines")
    if format != "text" and tgt_path is not None:
        raise ConfigError(f"tgt_path is only for format='text' (two line-aligned files), "
                          f"not format={format!r}")
    return format


def _side(text: str, what: str, where: str) -> str:
    if not text.strip():
        raise DataError(f"{where}: {what} is empty, expected non-empty text")
    return text


def _tsv(p: Path) -> Pairs:
    seen = False
    for n, line in numbered_lines(p):
        text = _strip_eol(line)
        if not text.strip() and "\t" not in text:
            continue
        fields = text.split("\t")
        where = f"{p}:line {n}"
        if len(fields) != 2:
            raise DataError(f"{where}: expected 'source<TAB>target' (one tab), found "
                            f"{len(fields) - 1} tabs")
        seen = True
        yield n, _side(fields[0], "the source side", where), _side(fields[1],
                                                                   "the target side", where)
    if not seen:
        raise _empty(p, "'source<TAB>target' per line")


def _language(pair: dict, lang: str, where: str) -> str:
    if lang not in pair:
        langs = ", ".join(map(str, pair)) or "none"
        raise DataError(f"{where}: language {lang!r} is not in 'translation' (languages: "
                        f"{langs}); src_lang and tgt_lang must name two of them")
    return _text(pair, lang, where)


def _jsonl(p: Path, src_lang: str, tgt_lang: str, fields: tuple[str, str]) -> Pairs:
    a, b = fields
    for n, obj in _json_objects(p):
        where = f"{p}:line {n}"
        if "translation" in obj and a not in obj:
            pair = obj["translation"]
            if not isinstance(pair, dict):
                raise DataError(f"{where}: field 'translation' is {_json_type(pair)}, "
                                "expected an object {language: text}")
            yield n, _language(pair, src_lang, where), _language(pair, tgt_lang, where)
        elif a not in obj:
            hint = ", or 'translation': {language: text}" if fields == ("src", "tgt") else ""
            raise _missing(obj, a, where, f"; expected {a!r} and {b!r}{hint}")
        else:
            yield n, _text(obj, a, where), _text(obj, b, where)


def _lines(p: Path) -> list[str]:
    lines = [_strip_eol(line) for _, line in numbered_lines(p)]
    if not lines:
        raise _empty(p, "one sentence per line")
    return lines


def _text_files(p: Path, q: Path) -> Pairs:
    src, tgt = _lines(p), _lines(q)
    if len(src) != len(tgt):
        raise DataError(f"{p} has {len(src)} lines but {q} has {len(tgt)}; the files must "
                        "be line-aligned (line N of one translates line N of the other)")
    for n, (s, t) in enumerate(zip(src, tgt, strict=True), 1):
        yield n, _side(s, "the line", f"{p}:line {n}"), _side(t, "the line", f"{q}:line {n}")


def read_parallel(path: str | os.PathLike, *, src_lang: str, tgt_lang: str,
                  format: str | None = None, tgt_path: str | os.PathLike | None = None,
                  fields: tuple[str, str] = ("src", "tgt")) -> list[dict]:
    """Sentence pairs ``{"src", "tgt", "_line"}`` from ``path`` (TSV, JSONL, or the source
    lines of a text pair whose target lines are ``tgt_path``).

    ``src_lang``/``tgt_lang`` (e.g. ``"en"``, ``"zh"``) pick the two texts of a Hugging
    Face ``{"translation": {...}}`` line; ``format`` None picks by suffix (module doc).
    ``fields`` names the two JSONL fields read as source and target (summarisation:
    ``("document", "summary")``).
    """
    p = Path(path)
    _check_lang(src_lang, "src_lang")
    _check_lang(tgt_lang, "tgt_lang")
    fmt = _format(p, format, tgt_path)
    pairs = (_tsv(p) if fmt == "tsv" else _jsonl(p, src_lang, tgt_lang, fields)
             if fmt == "jsonl" else _text_files(p, Path(tgt_path)))
    return [{"src": s, "tgt": t, LINE: n} for n, s, t in pairs]


def write_parallel(records: Iterable[dict], path: str | os.PathLike) -> None:
    """Write ``{"src", "tgt"}`` records as TSV or JSONL (by suffix), atomically (a temp
    file in the same folder, then a rename). Only ``src`` and ``tgt`` are written; both
    must be non-empty text, and for TSV hold no tab or line break."""
    p = Path(path)
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot write {p}: unknown suffix {p.suffix!r}; expected one of "
                        f"{', '.join(_SUFFIXES)}")
    recs = []
    for i, rec in enumerate(records, 1):
        where = f"cannot write {p}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is {type(rec).__name__}, expected a dict with 'src' "
                            "and 'tgt'")
        for field in ("src", "tgt"):
            text = _text(rec, field, where)
            if bad := _SURROGATE.search(text):
                raise DataError(f"{where}: field {field!r} holds the unpaired surrogate "
                                f"\\u{ord(bad.group()):04x}, which is not valid Unicode")
            if fmt == "tsv" and any(c in text for c in "\t\n\r"):
                raise DataError(f"{where}: field {field!r} holds a tab or line break, which "
                                "TSV cannot hold (write .jsonl)")
        recs.append({"src": rec["src"], "tgt": rec["tgt"]})
    if not recs:
        raise DataError(f"cannot write {p}: no records (an empty file is not parallel data)")
    if fmt == "jsonl":
        _write_jsonl(recs, p)
    else:
        write_text(p, "".join(f"{r['src']}\t{r['tgt']}\n" for r in recs))
