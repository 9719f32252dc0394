"""``lmforge data redact``: PII replaced in .txt, .jsonl and .csv files, streaming.

The structure of each file is kept: a text file line by line; in a JSON Lines file the
chosen fields of each record (default: every string anywhere in the record, e.g. each
``messages[i].content``), keys untouched; in a CSV file the chosen columns (default:
all), the header untouched. Memory is bounded by the longest line or record. Each output
is written to a temporary file renamed into place when complete, so an interrupted run
leaves no partial output.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...data.readers import csv_rows, iter_lines, parse_json_line, resolve_inputs
from ...errors import DataError
from ...io import atomic_open
from .analyzer import DEFAULT_THRESHOLD, analyze, check_types
from .operators import OPERATORS, anonymize

FORMATS = (".txt", ".jsonl", ".csv")


@dataclass
class Redactor:
    """Analyze-and-replace for one string, counting what it replaced."""

    types: tuple[str, ...]
    operator: str = "mask"
    salt: bytes = field(default=b"", repr=False)  # a secret: kept out of repr and logs
    threshold: float = DEFAULT_THRESHOLD
    counts: Counter = field(default_factory=Counter)

    def __call__(self, text: str) -> str:
        spans = analyze(text, self.types, self.threshold)
        self.counts.update(s.type for s in spans)
        return anonymize(text, spans, self.operator, self.salt) if spans else text


def make_redactor(types: Sequence[str] | None = None, operator: str = "mask",
                  salt: bytes = b"", threshold: float = DEFAULT_THRESHOLD) -> Redactor:
    """A :class:`Redactor`; unknown types or operators are a one-line ConfigError."""
    anonymize("", [], operator, salt)  # validates operator and salt
    return Redactor(check_types(types), operator, salt, threshold)


def _redact_json(value, redact: Callable[[str], str], fields: Sequence[str] | None, top=True):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(v, redact, None) for v in value]
    if isinstance(value, dict):
        return {k: (_redact_json(v, redact, None, False)
                    if not top or fields is None or k in fields else v)
                for k, v in value.items()}
    return value


def _txt(src: Path, out, redact: Redactor) -> None:
    for line in iter_lines(src):
        body = line.rstrip("\r\n")
        out.write((redact(body) + line[len(body):]).encode())


def _jsonl(src: Path, out, redact: Redactor, fields: Sequence[str] | None) -> None:
    for n, line in enumerate(iter_lines(src), 1):
        if not line.strip():
            continue
        obj = parse_json_line(src, n, line)
        if fields and isinstance(obj, dict) and (missing := [f for f in fields if f not in obj]):
            raise DataError(f"{src}:line {n}: field {missing[0]!r} is missing")
        try:
            text = json.dumps(_redact_json(obj, redact, fields), ensure_ascii=False)
        except RecursionError:  # parsed, but too deep to walk and write back
            raise DataError(f"{src}:line {n}: the record is nested too deeply") from None
        out.write((text + "\n").encode())


def _csv(src: Path, out, redact: Redactor, columns: Sequence[str] | None) -> None:
    reader = csv.reader(iter_lines(src), strict=True)
    header = next(reader, None)
    if header is None:
        return
    if columns and (missing := [c for c in columns if c not in header]):
        raise DataError(f"{src}: column {missing[0]!r} not found (columns: "
                        f"{', '.join(header)})")
    chosen = {i for i, c in enumerate(header) if not columns or c in columns}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for _, row in csv_rows(reader, len(header), src):
        writer.writerow([redact(v) if i in chosen else v for i, v in enumerate(row)])
        out.write(text.getvalue().encode())
        text.seek(0)
        text.truncate()
    out.write(text.getvalue().encode())


def redact_file(src: str | os.PathLike, dst: str | os.PathLike, redact: Redactor,
                fields: Sequence[str] | None = None) -> None:
    """Write ``src`` with its PII replaced to ``dst`` (same format, atomic)."""
    src, dst = Path(src), Path(dst)
    suffix = src.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"cannot redact {src}: the suffix must be one of {', '.join(FORMATS)}")
    if src.resolve() == dst.resolve():
        raise DataError(f"--out {dst} is the input file; write the redacted copy elsewhere")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(dst) as out:
        if suffix == ".txt":
            _txt(src, out, redact)
        elif suffix == ".jsonl":
            _jsonl(src, out, redact, fields)
        else:
            _csv(src, out, redact, fields)


def redact_inputs(inputs: Sequence[str], out: str | os.PathLike, redact: Redactor,
                  fields: Sequence[str] | None = None) -> list[Path]:
    """Redact files, folders or globs: one file to ``out`` (a file), several to the folder
    ``out`` under their names relative to their input folder. Returns what it wrote."""
    files = resolve_inputs(inputs)
    bad = [f for f in files if f.suffix.lower() not in FORMATS]
    if bad:
        raise DataError(f"cannot redact {bad[0]}: the suffix must be one of {', '.join(FORMATS)}")
    out = Path(out)
    single = len(files) == 1 and len(inputs) == 1 and Path(inputs[0]).is_file()
    if single and out.is_dir():
        out = out / files[0].name
    targets = []
    for f in files:
        if single:
            targets.append(out)
            continue
        root = next((Path(i) for i in inputs if Path(i).is_dir() and f.is_relative_to(i)), None)
        targets.append(out / (f.relative_to(root) if root else Path(f.name)))
    if len(set(targets)) != len(targets):
        raise DataError("two inputs would be written to the same output name; redact them "
                        "separately")
    for f, t in zip(files, targets, strict=True):
        redact_file(f, t, redact, fields)
    return targets


__all__ = ["OPERATORS", "Redactor", "make_redactor", "redact_file", "redact_inputs"]
