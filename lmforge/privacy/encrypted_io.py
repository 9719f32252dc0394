"""Files that may be encrypted at rest, read and written without plaintext on disk.

Every reader on the load path of model folders, Hugging Face folders, tokenizers and
training checkpoints goes through :func:`read_bytes`. A file that starts with the
encryption header (:mod:`.crypto`) is verified and decrypted *in memory* with the key;
any other file is returned as stored, so a folder may mix both. A decryption either
returns the whole plaintext or raises (a flipped bit, a truncation, a wrong key), so
nothing ever loads partially. Parsers take the bytes: ``safetensors.torch.load(bytes)``,
``torch.load(io.BytesIO(bytes))``, ``json.loads``, ``tokenizers.Tokenizer.from_str``.

The key is given (``key=``) or *active*: inside ``with using_key(key):`` every reader and
writer here uses it by default. The active key lives in a :class:`contextvars.ContextVar`,
so it reaches the whole call tree below (a recipe run, its trainer, its checkpoints)
without being stored in any config, and a thread started elsewhere does not see it.
Writers (:func:`write_bytes`, :func:`write_text`, :func:`write_json`) are atomic
(:func:`lmforge.io.atomic_open`) and encrypt exactly when a key is given or active: the
plaintext goes from memory into the cipher, never to a file.

:func:`lmforge.io.read_json` is :func:`read_json` here, so every JSON reader of the
project decrypts with the active key; torch is imported by the two tensor readers only,
which keeps that cheap.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, ConfigError, LmforgeError
from ..io import atomic_open
from .crypto import MAGIC, decrypt_stream, encrypt_stream, is_encrypted, open_header
from .keys import KeySource

if TYPE_CHECKING:
    import torch

__all__ = ["using_key", "active_key", "read_bytes", "read_text", "read_json",
           "load_safetensors", "torch_load", "write_bytes", "write_bytes_as", "write_text",
           "write_json", "check_key", "KEY_OPTIONS"]

KEY_OPTIONS = "--key-file FILE, --key-env VAR or --passphrase-env VAR"

_ACTIVE: ContextVar[KeySource | None] = ContextVar("lmforge_encryption_key", default=None)


@contextlib.contextmanager
def using_key(key: KeySource | None) -> Iterator[None]:
    """Make ``key`` the default key of the readers and writers inside the block;
    ``None`` leaves the key already active (if any) in force."""
    if key is None:
        yield
        return
    token = _ACTIVE.set(key)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_key(key: KeySource | None = None) -> KeySource | None:
    """``key`` when given, else the active one (None: files are read and written plain)."""
    return key if key is not None else _ACTIVE.get()


def read_bytes(path: str | Path, key: KeySource | None = None) -> bytes:
    """The plaintext of ``path``: decrypted in memory when it is encrypted (all chunks
    verified), as stored otherwise. An encrypted file without a key raises
    :class:`ConfigError` naming the options that supply one; a wrong key or a damaged file
    raises :class:`CheckpointError` (:func:`lmforge.privacy.crypto.decrypt_stream`).
    ``OSError`` (a missing file) propagates, as from :meth:`Path.read_bytes`."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(len(MAGIC))
        if head != MAGIC:
            return head + f.read()
        source = active_key(key)
        if source is None:
            raise _no_key(p)
        f.seek(0)
        buf = io.BytesIO()
        decrypt_stream(f, buf, source, str(p))
    return buf.getvalue()


def read_text(path: str | Path, key: KeySource | None = None) -> str:
    """:func:`read_bytes` decoded as UTF-8 (``UnicodeDecodeError`` propagates)."""
    return read_bytes(path, key).decode("utf-8")


def read_json(path: str | Path, *, key: KeySource | None = None, kind: type = dict,
              error: type[LmforgeError] = CheckpointError) -> Any:
    """The JSON value of ``path`` (encrypted or not), which must be a ``kind``; a missing
    or unreadable file, invalid JSON or UTF-8, or another type raises ``error`` naming
    the file (:func:`lmforge.io.read_json`'s contract). The options are keywords, so that
    ``kind`` (the second argument of :func:`lmforge.io.read_json`) is never taken for a
    key."""
    p = Path(path)
    try:
        obj = json.loads(read_text(p, key))
    except FileNotFoundError:
        raise error(f"{p} not found") from None
    except (OSError, ValueError, RecursionError) as e:  # bad UTF-8 or JSON, nested too deep
        raise error(f"{p} is corrupt: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, kind):
        want = "a JSON object" if kind is dict else f"a JSON {kind.__name__}"
        raise error(f"{p} is corrupt: expected {want}, got {type(obj).__name__}")
    return obj


def load_safetensors(path: str | Path, key: KeySource | None = None
                     ) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file: memory-mapped when it is plain, parsed from the
    decrypted bytes when it is encrypted. The parser's errors propagate."""
    from safetensors.torch import load, load_file

    if not is_encrypted(path):
        return load_file(str(path))
    return load(read_bytes(path, key))


def torch_load(path: str | Path, key: KeySource | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, from the decrypted
    bytes when the file is encrypted (no code in the file runs)."""
    import torch

    src: Any = io.BytesIO(read_bytes(path, key)) if is_encrypted(path) else path
    return torch.load(src, map_location="cpu", weights_only=True)


def write_bytes(path: str | Path, data: bytes, key: KeySource | None = None) -> None:
    """Write ``data`` to ``path`` atomically, encrypted when a key is given or active."""
    write_bytes_as(path, data, active_key(key))


def write_bytes_as(path: str | Path, data: bytes, key: KeySource | None) -> None:
    """Write ``data`` to ``path`` atomically: encrypted with ``key``, plain when it is None
    (the active key is not consulted, so a file can be rewritten in the form it was
    found in)."""
    with atomic_open(path) as f:
        if key is None:
            f.write(data)
        else:
            encrypt_stream(io.BytesIO(data), f, key)


def write_text(path: str | Path, text: str, key: KeySource | None = None) -> None:
    """:func:`write_bytes` of UTF-8 ``text``."""
    write_bytes(path, text.encode("utf-8"), key)


def write_json(path: str | Path, obj: Any, key: KeySource | None = None) -> None:
    """:func:`write_text` of ``obj`` as indented UTF-8 JSON (as
    :func:`lmforge.io.atomic_write_json` writes it)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", key)


def check_key(path: str | Path, key: KeySource | None = None) -> None:
    """Does the key at hand open ``path``? A plain file needs none. For an encrypted one,
    no key, or a key its header's key check rejects (a wrong key or passphrase, a key
    file for a passphrase file or the reverse, or a damaged header), raises
    :class:`ConfigError`: the user's key is the likely fault, so callers need not offer
    remedies for damaged files. Reads the header only (one scrypt for a passphrase)."""
    if not is_encrypted(path):
        return
    source = active_key(key)
    if source is None:
        raise _no_key(Path(path))
    with open(path, "rb") as f:
        try:
            open_header(f, source, str(path))
        except CheckpointError as e:
            raise ConfigError(str(e)) from None


def _no_key(p: Path) -> ConfigError:
    return ConfigError(f"{p} is encrypted; give its key with {KEY_OPTIONS}")
