"""Streaming document readers for ``.txt``, ``.jsonl``, ``.csv`` and ``.parquet`` inputs.

:func:`iter_documents` turns a list of inputs (files, folders, glob patterns) into a stream
of :class:`Document` objects, one at a time, so that memory does not grow with the size
of the corpus. Text files are read in binary chunks and decoded with an incremental
UTF-8 decoder; the byte offset of the first invalid byte is reported exactly::

    for doc in iter_documents(["corpus/", "extra/*.jsonl"], field="content"):
        print(doc.source, doc.text[:40])

Formats
-------
``.txt``      ``txt_mode="line"`` (default): every non-blank line is a document.
              ``"paragraph"``: blocks separated by blank lines. ``"file"``: the whole file.
``.jsonl``    one JSON object per line; the document is ``obj[field]`` (a string).
``.csv``      a header row, then one document per row in ``column``.
``.parquet``  one document per row of the string ``column`` (needs ``pyarrow``).

A ``.csv`` quote left open at the end of the file, a JSON string holding an unpaired
surrogate (``"\\ud800"``) and a corrupt Parquet data page are errors, not data.

Every user mistake raises :class:`~lmforge.errors.DataError` with a one-line message that
names the file (and line, row or byte offset).
"""

from __future__ import annotations

import codecs
import csv
import errno
import glob
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, DataError

SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
TXT_MODES = ("line", "paragraph", "file")
CHUNK_BYTES = 1 << 20
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Document:
    """One document: its text and where it came from (``path:line N`` / ``path:row N``)."""

    text: str
    source: str


# ----------------------------------------------------------------------------- inputs


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _supported(path: Path) -> bool:
    return _suffix(path) in SUFFIXES


def _walk_error(e: OSError) -> None:
    raise DataError(f"cannot read folder {e.filename}: {e.strerror or e}")


def _walk_dir(root: Path) -> list[Path]:
    """Supported files below ``root``, recursively, sorted; hidden entries skipped.

    Symbolic links to folders are followed (a folder reached twice, e.g. through a link
    back to a parent, is read once); a folder that cannot be listed raises
    :class:`DataError` instead of being skipped.
    """
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop, or two links to the same folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and _supported(p):
                found.append(p)
    return sorted(found)


def _not_readable(p: Path, given: str) -> DataError:
    """The error for an input that is neither a file nor a folder nor a glob."""
    if not given:
        return DataError("input path is empty")
    if not given.strip():
        return DataError(f"input path {given!r} is blank")
    if os.path.islink(p):
        try:
            os.stat(p)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return DataError(f"input {given} is a broken symbolic link (to "
                                 f"{os.readlink(p)})")
            return DataError(f"cannot read {given}: {e.strerror or e}")
    if os.path.lexists(p):
        return DataError(f"input {given} is not a regular file or folder")
    return DataError(f"input not found: {given}")


def _check_file(path: Path) -> Path:
    if not _supported(path):
        raise DataError(f"unsupported input file {path}: the suffix must be one of "
                        f"{', '.join(SUFFIXES)}")
    return path


def resolve_inputs(inputs: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Expand files, folders (recursively, sorted) and glob patterns (sorted) into files.

    A pattern reads each file it reaches once, however many of its matches lead to it
    (``corpus/**`` matches both ``corpus/sub`` and the files in it). Raises
    :class:`DataError` for an empty path, a path that does not exist (or is a broken or
    looping link, or neither a file nor a folder), a glob that matches nothing, a folder
    with no supported files, or a file with an unsupported suffix.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        s = os.fspath(item)
        if not s:  # Path("") is ".", which would read the whole current folder
            raise _not_readable(Path(s), s)
        p = Path(s).expanduser()
        if p.is_dir():
            found = _walk_dir(p)
            if not found:
                raise DataError(f"input folder {p} has no {'/'.join(SUFFIXES)} files")
            files.extend(found)
        elif p.is_file():
            files.append(_check_file(p))
        elif _GLOB_CHARS & set(s):
            matches = sorted(glob.glob(os.path.expanduser(s), recursive=True))
            if not matches:
                raise DataError(f"input pattern {s} matches no files")
            # "**" matches folders and the files in them, and follows links: read each
            # file the pattern reaches once.
            seen: set[str] = set()
            for m in matches:
                mp = Path(m)
                for f in _walk_dir(mp) if mp.is_dir() else [_check_file(mp)]:
                    real = os.path.realpath(f)
                    if real not in seen:
                        seen.add(real)
                        files.append(f)
        else:
            raise _not_readable(p, s)
    return files


# ----------------------------------------------------------------------------- decoding


def iter_lines(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Yield the lines of a UTF-8 file, each with its ``"\\n"`` ending (the last may lack it).

    The file is read in ``chunk_bytes`` chunks through an incremental decoder, so memory is
    bounded by the longest line. ``"\\r\\n"`` endings are kept as they are; only ``"\\n"``
    splits lines (never ``"\\u2028"`` or form feeds). A UTF-8 byte-order mark at the start is
    dropped. Invalid UTF-8 raises :class:`DataError` with the byte offset of the first bad
    byte, after the complete lines before it have been yielded. An encrypted file (``lmforge
    encrypt``; a keyed run's ``backbone_text.txt``) is read the same way from its plaintext,
    decrypted in memory with the active key (:func:`_open_bytes`).
    """
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pos = 0  # bytes of the file consumed before the current chunk
    carry: list[str] = []  # the pieces of the line not yet ended
    first = True
    try:
        f = _open_bytes(path)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        while True:
            chunk = f.read(chunk_bytes)
            final = not chunk
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                # e.start counts from the decoder's buffered bytes + this chunk.
                offset = pos - pending + e.start
                bad = e.object[e.start:e.start + 1].hex()
                # First hand out the complete lines before the bad byte.
                valid = e.object[:e.start].decode("utf-8")
                if first and valid.startswith("\ufeff"):
                    valid = valid[1:]
                parts = ("".join(carry) + valid).split("\n")
                for line in parts[:-1]:
                    yield line + "\n"
                raise DataError(f"{path} is not valid UTF-8: invalid byte 0x{bad} at byte "
                                f"offset {offset} (convert the file to UTF-8, e.g. with iconv)"
                                ) from None
            pos += len(chunk)
            if first and text:
                if text[0] == "\ufeff":
                    text = text[1:]
                first = False
            if "\n" in text:
                parts = ("".join(carry) + text).split("\n")
                carry = [parts.pop()]
                for line in parts:
                    yield line + "\n"
            elif text:  # inside a long line: keep the pieces, join once (linear time)
                carry.append(text)
            if final:
                break
    if carry and (rest := "".join(carry)):
        yield rest


def _decrypted(path: Path) -> BinaryIO | None:
    """An encrypted file's plaintext (``lmforge encrypt``), decrypted in memory with the
    active key (:func:`lmforge.privacy.encrypted_io.read_bytes`: without one, its one-line
    error naming the key options), so no plaintext reaches the disk; None for a plain
    file."""
    from ..privacy.crypto import is_encrypted

    if not is_encrypted(path):
        return None
    from ..privacy.encrypted_io import read_bytes

    return io.BytesIO(read_bytes(path))


def _open_bytes(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, or its plaintext when it is encrypted."""
    return _decrypted(path) or open(path, "rb")


def _strip_eol(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


# ----------------------------------------------------------------------------- formats


def _read_txt(path: Path, mode: str) -> Iterator[Document]:
    if mode == "line":
        for n, line in enumerate(iter_lines(path), 1):
            text = _strip_eol(line)
            if text.strip():
                yield Document(text, f"{path}:line {n}")
    elif mode == "paragraph":
        buf: list[str] = []
        start = 0
        for n, line in enumerate(iter_lines(path), 1):
            text = _strip_eol(line)
            if text.strip():
                if not buf:
                    start = n
                buf.append(text)
            elif buf:
                yield Document("\n".join(buf), f"{path}:line {start}")
                buf = []
        if buf:
            yield Document("\n".join(buf), f"{path}:line {start}")
    else:  # "file": the whole file is one document (held in memory)
        text = "".join(iter_lines(path))
        if text.strip():
            yield Document(text, str(path))


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean (true/false)", type(None): "null"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def parse_json(path: str | os.PathLike, text: str, line: int | None = None) -> object:
    """``json.loads(text)``; bad JSON is a :class:`DataError` naming ``path`` and the line:
    ``line`` when ``text`` is one line of a JSON Lines file, else the line of a whole file
    where the syntax error is (a syntax error with its column, nesting too deep, a
    too-long integer)."""
    where = str(path) if line is None else f"{path}:line {line}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = f"{path}:line {e.lineno if line is None else line}"
        raise DataError(f"{at}: invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: invalid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise DataError(f"{where}: invalid JSON ({str(e).split(';')[0]})") from None


def parse_json_line(path: str | os.PathLike, n: int, line: str) -> object:
    """Line ``n`` of the JSON Lines file ``path``, parsed (:func:`parse_json`)."""
    return parse_json(path, line, n)


def _read_jsonl(path: Path, field: str) -> Iterator[Document]:
    for n, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        obj = parse_json_line(path, n, line)
        if not isinstance(obj, dict):
            raise DataError(f"{path}:line {n}: expected a JSON object, got "
                            f"{_json_type(obj)}")
        if field not in obj:
            keys = ", ".join(map(str, obj)) or "none"
            raise DataError(f"{path}:line {n}: field {field!r} is missing (fields: {keys}); "
                            "choose one with --field")
        value = obj[field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{path}:line {n}: field {field!r} is {_json_type(value)}, "
                            "expected a string")
        # The line was valid UTF-8, so a lone surrogate can only come from an escape such
        # as "\ud800" (half of an emoji cut in two); no tokenizer or file can hold it.
        if _SURROGATE_ESCAPE.search(line) and (bad := _SURROGATE.search(value)):
            raise DataError(f"{path}:line {n}: field {field!r} holds the unpaired surrogate "
                            f"\\u{ord(bad.group()):04x}, which is not valid Unicode")
        if value.strip():
            yield Document(value, f"{path}:line {n}")


def _csv_problem(e: csv.Error) -> str:
    msg = str(e)
    if msg == "unexpected end of data":
        return "a quoted field is not closed before the end of the file"
    if msg.startswith("new-line character seen in unquoted field"):
        return ("a carriage return (\\r) inside an unquoted field; convert old Mac "
                "line endings to \\n")
    return msg


def _read_csv(path: Path, column: str) -> Iterator[Document]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    # strict: a quote left open at the end of the file (a truncated file) or text after a
    # closing quote is an error, not silently taken as data.
    reader = csv.reader(iter_lines(path), strict=True)
    start = 1  # the line where the current record starts (a quoted field may span lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        if not header:
            raise DataError(f"{path}:line 1: the header row is empty; the first line must "
                            "name the columns")
        if column not in header:
            raise DataError(f"{path}: column {column!r} not found (columns: "
                            f"{', '.join(header) or 'none'}); choose one with --column")
        if header.count(column) > 1:
            raise DataError(f"{path}: column {column!r} appears {header.count(column)} "
                            "times in the header, so which one holds the text is unclear")
        idx = header.index(column)
    except csv.Error as e:
        raise DataError(f"{path}:line {start}: malformed CSV ({_csv_problem(e)})") from None
    for line, row in csv_rows(reader, len(header), path):
        value = row[idx]
        if value.strip():
            yield Document(value, f"{path}:line {line}")


def csv_rows(reader: Iterator[list[str]], n_fields: int, path: str | os.PathLike,
             kind: str = "CSV") -> Iterator[tuple[int, list[str]]]:
    """The data rows left in a ``csv.reader`` after its header: ``(line, fields)`` for
    each non-blank row, ``line`` being where the row starts (a quoted field may span
    lines). A row without ``n_fields`` fields, or malformed CSV, is a :class:`DataError`
    naming the line."""
    start = 1
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                return
            if not row:
                continue
            if len(row) != n_fields:
                raise DataError(f"{path}:line {start}: row has {len(row)} fields, "
                                f"the header has {n_fields}")
            yield start, row
    except csv.Error as e:
        raise DataError(f"{path}:line {start}: malformed {kind} ({_csv_problem(e)})"
                        ) from None


def _read_parquet(path: Path, column: str) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading {path} needs pyarrow: pip install 'lmforge[parquet]'"
                        ) from None
    source = _decrypted(path) or path
    try:
        pf = pq.ParquetFile(source)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-parquet files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable Parquet file: {msg}") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise DataError(f"{path}: column {column!r} not found (columns: "
                        f"{', '.join(names) or 'none'}); choose one with --column")
    typ = pf.schema_arrow.field(column).type
    import pyarrow as pa

    # a dictionary of strings is e.g. a pandas category column; string_view: pyarrow>=16
    vt = typ.value_type if pa.types.is_dictionary(typ) else typ
    if not (pa.types.is_string(vt) or pa.types.is_large_string(vt)
            or getattr(pa.types, "is_string_view", lambda t: False)(vt)):
        raise DataError(f"{path}: column {column!r} has type {typ}, expected a string")
    row = 0
    batches = pf.iter_batches(batch_size=1024, columns=[column])
    while True:
        try:
            batch = next(batches, None)
            values = None if batch is None else batch.column(0).to_pylist()
        except (OSError, pa.ArrowException) as e:  # corrupt or truncated data pages
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{path} is corrupt after row {row}: {msg}") from None
        if values is None:
            break
        for value in values:
            row += 1
            if value is not None and value.strip():
                yield Document(value, f"{path}:row {row}")


def read_file(path: str | os.PathLike, *, field: str = "text", column: str = "text",
              txt_mode: str = "line") -> Iterator[Document]:
    """Documents of one file, chosen by its suffix."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".txt":
        yield from _read_txt(path, txt_mode)
    elif suffix == ".jsonl":
        yield from _read_jsonl(path, field)
    elif suffix == ".csv":
        yield from _read_csv(path, column)
    elif suffix == ".parquet":
        yield from _read_parquet(path, column)
    else:
        _check_file(path)


def iter_documents(inputs: Iterable[str | os.PathLike] | str | os.PathLike, *,
                   field: str = "text", column: str = "text",
                   txt_mode: str = "line") -> Iterator[Document]:
    """Stream the documents of ``inputs`` (files, folders, glob patterns), in order.

    All inputs are resolved, and missing ones reported, when this function is called
    (not lazily at the first document). Blank documents are skipped. Nothing is held in memory beyond one document
    (one Parquet row batch; one whole file with ``txt_mode="file"``).
    """
    if txt_mode not in TXT_MODES:
        raise ConfigError(f"txt_mode={txt_mode!r} is not one of {', '.join(TXT_MODES)}")
    files = resolve_inputs(inputs)
    return _iter_files(files, field=field, column=column, txt_mode=txt_mode)


def _iter_files(files: list[Path], **kw) -> Iterator[Document]:
    for path in files:
        yield from read_file(path, **kw)
