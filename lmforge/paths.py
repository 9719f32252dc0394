"""Names, read from files and requests, that must stay inside their folder.

A model folder's index (``model.safetensors.index.json``), a checkpoint's checksum table
(``trainer_state.json``) or a registry name in an admin request names files relative to
a folder. Taken as given, ``../../x`` or ``/etc/x`` would make lmforge read a file the
author of the JSON (or the client) chose anywhere on the machine. :func:`child_path`
accepts a relative name without ``..`` components; :func:`plain_name` one path component.

The check is on the name, not on where symbolic links inside the folder lead: a folder's
own links are its owner's choice (the Hugging Face cache links every snapshot file to a
blob outside the snapshot folder), and lmforge never creates one.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import LmforgeError


def child_path(root: str | Path, name: str, error: type[LmforgeError], what: str) -> Path:
    """``root / name`` when ``name`` is relative with no ``..`` component, in POSIX or
    Windows spelling, else ``error`` with a one-line message naming ``what`` (the file or
    field that gave ``name``)."""
    parts = PurePosixPath(name).parts + PureWindowsPath(name).parts
    if (not name or "\0" in name or PurePosixPath(name).is_absolute()
            or PureWindowsPath(name).anchor or ".." in parts):
        raise error(f"{what} names {name!r}, which is outside {root}")
    return Path(root) / name


def plain_name(name: str, error: type[LmforgeError], what: str) -> str:
    """``name`` when it is one path component (not empty, ``.`` or ``..``, no ``/``,
    ``\\`` or NUL), else ``error`` with a one-line message naming ``what``."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise error(f"{what} {name!r} must be a plain name (no '/', '\\' or '..')")
    return name
