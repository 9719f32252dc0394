"""Atomic file and folder writes.

A write goes to a temporary sibling, is flushed and ``fsync``-ed, and is then renamed over
the target with :func:`os.replace`, which is atomic on POSIX file systems. A process
killed at any instant therefore leaves either the old file or the new one, never a torn
mixture. Folder writes (:func:`atomic_dir`) stage every file in a temporary folder and
rename the folder into place as the last step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import CheckpointError, LmforgeError


def _read_umask() -> int:
    """The process umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; what lmforge writes gets the modes
# a plain open()/mkdir() would give (0666/0777 less the umask), so shared models stay
# readable by the group/others the umask allows. Read once, at import.
_UMASK = _read_umask()
_FILE_MODE, _DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entry table so that a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written in it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise LmforgeError(f"output folder {p} is not writable: it is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise LmforgeError(f"output folder {p} is not writable: {e.strerror or e}") from None
    return p


def read_json(path: str | os.PathLike, kind: type = dict,
              error: type[LmforgeError] = CheckpointError) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (an object by default).

    A missing or unreadable file, invalid JSON, text that is not UTF-8 or a value of
    another type raises ``error`` with a one-line message that names the file. A file
    encrypted at rest is decrypted in memory with the active key
    (:func:`lmforge.privacy.encrypted_io.read_json`, which this is; imported here on
    first use, since that module imports this one).
    """
    from .privacy.encrypted_io import read_json as read_maybe_encrypted

    return read_maybe_encrypted(path, kind=kind, error=error)


def torch_load_error(e: BaseException) -> str:
    """A one-line reason for a failed ``torch.load(weights_only=True)``.

    torch's message for a file that its safe unpickler refuses starts with advice to load
    it with ``weights_only=False`` (which would run code from the file); lmforge never
    does that, so the advice is dropped and the unpickler's own reason kept.
    """
    text = str(e)
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1]
        reason = next((ln.strip() for ln in rest.splitlines() if ln.strip()), "")
        return (f"not a plain tensor file ({reason})" if reason
                else "not a plain tensor file")
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, in pieces: the data goes to a temp file
    in the same folder, which is fsync-ed and renamed over ``path`` when the block ends;
    an exception leaves ``path`` as it was and removes the temp file."""
    path = Path(path)
    if path.is_dir():
        raise LmforgeError(f"cannot write {path}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        parent = path.parent
        why = (f"folder {parent} does not exist" if not parent.exists()
               else f"{parent} is not a folder" if not parent.is_dir()
               else f"folder {parent} is not writable ({e.strerror or e})")
        raise LmforgeError(f"cannot write {path}: {why}") from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file and folder below ``path``."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Stage a folder and move it to ``path`` atomically when the block succeeds.

    Yields a temporary folder next to ``path``. On success every file in it is fsync-ed
    and the folder is renamed to ``path`` (an existing ``path`` is replaced). On error the
    temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tmp.chmod(_DIR_MODE)
        yield tmp
        fsync_tree(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
