"""Documents to index: their checks, and readers for JSONL files and folders of .txt files.

A document is a mapping with a string ``id`` (a JSON integer is taken as its decimal
string) and a non-blank string ``text``; ``title`` and ``lang`` are optional strings, and
every other field is kept as JSON metadata. Formats:

``docs.jsonl``   one JSON object per line, e.g. ``{"id": "d1", "title": "..", "text": ".."}``
``folder/``      every ``*.txt`` file directly in it is one document; its id is the file
                 name without ``.txt``

A document that breaks a rule raises :class:`~lmforge.errors.DataError` with one line that
names where it came from (``file:line N``, the .txt file, or ``document N`` for a Python
list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.readers import iter_lines, parse_json_line
from ..errors import DataError

__all__ = ["Doc", "check_doc", "read_docs"]

_FIELDS = ("id", "text", "title", "lang")


@dataclass(frozen=True)
class Doc:
    """A checked document; ``metadata`` is its other fields as canonical JSON text."""

    id: str
    text: str
    title: str = ""
    lang: str = ""
    metadata: str = "{}"


def check_doc(obj: Any, where: str) -> Doc:
    """``obj`` as a :class:`Doc`, or a one-line :class:`DataError` that starts with
    ``where``."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected an object with 'id' and 'text', "
                        f"got {type(obj).__name__}")
    for field in ("id", "text"):
        if field not in obj:
            raise DataError(f"{where}: field {field!r} is missing")
    doc_id = obj["id"]
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise DataError(f"{where}: field 'id' must be a non-empty string (got {doc_id!r})")
    if not isinstance(obj["text"], str) or not obj["text"].strip():
        raise DataError(f"{where}: field 'text' must be a non-blank string")
    for field in ("title", "lang"):
        if obj.get(field) is not None and not isinstance(obj[field], str):
            raise DataError(f"{where}: field {field!r} must be a string "
                            f"(got {type(obj[field]).__name__})")
    extra = {str(k): v for k, v in obj.items() if k not in _FIELDS}
    try:
        metadata = json.dumps(extra, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: a metadata field is not JSON ({e})") from None
    return Doc(doc_id, obj["text"], obj.get("title") or "", obj.get("lang") or "", metadata)


def read_docs(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The documents of a ``.jsonl`` file or of a folder of ``.txt`` files, each checked
    (see the module docstring) as it is read."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.txt") if f.is_file())
        if not files:
            raise DataError(f"{p} holds no .txt files")
        for f in files:
            doc = {"id": f.stem, "text": "".join(iter_lines(f))}
            check_doc(doc, str(f))
            yield doc
    elif p.suffix.lower() == ".jsonl" and p.is_file():
        for n, line in enumerate(iter_lines(p), 1):
            if line.strip():
                obj = parse_json_line(p, n, line)
                check_doc(obj, f"{p}:line {n}")
                yield obj
    elif not p.exists():
        raise DataError(f"{p} does not exist")
    else:
        raise DataError(f"{p}: expected a .jsonl file or a folder of .txt files")
