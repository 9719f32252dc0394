"""Encryption at rest: AES-256-GCM in the STREAM construction (Hoang, Reyhanitabar, Rogaway
and Vizár 2015), the way Tink's streaming AEAD and age chunk a file.

A file is a header and a sequence of chunks::

    header  = MAGIC (8) | kdf (1) | salt (16) | prefix (7) | chunk_size (4) | key_check (16)
    chunk_i = AES-GCM_K(nonce = prefix ‖ i (4 bytes) ‖ last (1 byte), plaintext_i, aad = header)

Each chunk holds ``chunk_size`` bytes of plaintext (the last one fewer, possibly none) and a
16-byte tag. Its nonce is unique (a random per-file prefix, the chunk index) and carries the
flag ``last``; the header is the associated data of every chunk. So:

* a flipped bit anywhere fails that chunk's tag (or the header's key check);
* reordered chunks fail, because chunk ``j`` is opened with index ``i ≠ j``;
* a file cut at a chunk boundary fails: its new final chunk was sealed with ``last = 0``;
* a file extended after its end fails: its real final chunk is opened with ``last = 0``;
* a chunk moved from another file fails: the header (salt, prefix) differs.

``key_check`` is the tag of an empty message under a reserved nonce, so a wrong key or
passphrase is reported as such before any chunk is read. With a passphrase, the key is
scrypt(passphrase, salt) (:mod:`.keys`). Decryption either returns the whole plaintext or
raises :class:`~lmforge.errors.CheckpointError`; :func:`decrypt_file` writes through a
temporary file renamed only after the last chunk verified, so no partial plaintext is left.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import CheckpointError, ConfigError
from ..io import atomic_open
from .keys import KeySource

MAGIC = b"LMFENC\x00\x01"
HEADER = struct.Struct(">8sB16s7sI16s")  # 52 bytes
TAG = 16
DEFAULT_CHUNK = 1 << 20
_KEY_CHECK_NONCE_TAIL = b"\xff\xff\xff\xff\x02"


def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 0xFFFFFFFF:
        raise ConfigError("file too large for one stream (2^32 chunks)")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def is_encrypted(path: str | Path) -> bool:
    """Whether ``path`` starts with lmforge's encryption header."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """``(chunk, is_last)`` with one chunk of look-ahead; an empty input is one empty chunk."""
    current = src.read(size)
    while True:
        nxt = src.read(size)
        yield current, not nxt
        if not nxt:
            return
        current = nxt


def encrypt_stream(src: BinaryIO, dst: BinaryIO, source: KeySource,
                   chunk_size: int = DEFAULT_CHUNK) -> None:
    salt, prefix = secrets.token_bytes(16), secrets.token_bytes(7)
    aead = _aead(source.derive(salt))
    kdf = 1 if source.uses_passphrase else 0
    partial = HEADER.pack(MAGIC, kdf, salt, prefix, chunk_size, b"\x00" * TAG)[:-TAG]
    check = aead.encrypt(prefix + _KEY_CHECK_NONCE_TAIL, b"", partial)
    header = partial + check
    dst.write(header)
    for i, (chunk, last) in enumerate(_chunks(src, chunk_size)):
        dst.write(aead.encrypt(_nonce(prefix, i, last), chunk, header))


def open_header(src: BinaryIO, source: KeySource, name: str):
    """Read and check the header of the file ``src`` (named ``name`` in errors): the
    cipher for its key, the header bytes, the nonce prefix and the chunk size. A file that
    is not lmforge-encrypted, a damaged header or a key the key check rejects raises
    :class:`CheckpointError`."""
    raw = src.read(HEADER.size)
    if len(raw) < HEADER.size or not raw.startswith(MAGIC):
        raise CheckpointError(f"{name} is not an lmforge-encrypted file (or its header is "
                              "damaged)")
    _, kdf, salt, prefix, chunk_size, check = HEADER.unpack(raw)
    if kdf == 1 and not source.uses_passphrase:
        raise CheckpointError(f"{name} was encrypted with a passphrase; give "
                              "--passphrase-env")
    if kdf == 0 and source.uses_passphrase:
        raise CheckpointError(f"{name} was encrypted with a key; give --key-file or --key-env")
    from cryptography.exceptions import InvalidTag

    aead = _aead(source.derive(salt))
    try:
        aead.decrypt(prefix + _KEY_CHECK_NONCE_TAIL, check, raw[:-TAG])
    except InvalidTag:
        raise CheckpointError(f"{name}: wrong key or passphrase (or a damaged header)") from None
    return aead, raw, prefix, chunk_size


def decrypt_stream(src: BinaryIO, dst: BinaryIO, source: KeySource, name: str = "input"
                   ) -> None:
    """Verify and decrypt ``src`` into ``dst`` chunk by chunk; any failure raises (the
    caller discards ``dst``)."""
    from cryptography.exceptions import InvalidTag

    aead, header, prefix, chunk_size = open_header(src, source, name)
    for i, (sealed, last) in enumerate(_chunks(src, chunk_size + TAG)):
        try:
            dst.write(aead.decrypt(_nonce(prefix, i, last), sealed, header))
        except InvalidTag:
            raise CheckpointError(f"{name}: chunk {i} failed authentication: the file was "
                                  "modified, truncated, reordered or extended") from None


def encrypt_file(src: str | Path, dst: str | Path, source: KeySource,
                 chunk_size: int = DEFAULT_CHUNK) -> None:
    """Encrypt ``src`` into ``dst`` atomically (``dst`` may be ``src``)."""
    with open(src, "rb") as f, atomic_open(dst) as out:
        encrypt_stream(f, out, source, chunk_size)


def decrypt_file(src: str | Path, dst: str | Path, source: KeySource) -> None:
    """Decrypt ``src`` into ``dst``; ``dst`` appears only if every chunk verified."""
    with open(src, "rb") as f, atomic_open(dst) as out:
        decrypt_stream(f, out, source, str(src))


def read_decrypted(path: str | Path, source: KeySource) -> bytes:
    """The plaintext of an encrypted file, in memory only."""
    buf = io.BytesIO()
    with open(path, "rb") as f:
        decrypt_stream(f, buf, source, str(path))
    return buf.getvalue()


def _files(root: Path) -> list[Path]:
    if not root.exists():
        raise ConfigError(f"{root} not found")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder or a file")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                raise ConfigError(f"{p} is a symbolic link; encrypt the folder it points to")
            found.append(p)
        dirnames.sort()
    return found


def encrypt_tree(root: str | Path, source: KeySource, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Encrypt every file under ``root`` in place (each file replaced atomically; files
    already encrypted are left, so an interrupted run can be repeated). Returns the count
    encrypted."""
    n = 0
    for p in _files(Path(root)):
        if not is_encrypted(p):
            encrypt_file(p, p, source, chunk_size)
            n += 1
    return n


def decrypt_tree(root: str | Path, source: KeySource) -> int:
    """Decrypt every encrypted file under ``root`` in place. All files are verified in
    memory first, so a wrong key or a damaged file changes nothing."""
    files = [p for p in _files(Path(root)) if is_encrypted(p)]
    for p in files:
        with open(p, "rb") as f:
            decrypt_stream(f, io.BytesIO(), source, str(p))
    for p in files:
        decrypt_file(p, p, source)
    return len(files)


def rotate_file(path: str | Path, old: KeySource, new: KeySource,
                chunk_size: int = DEFAULT_CHUNK) -> None:
    """Re-encrypt one file from ``old`` to ``new`` (plaintext only in memory, atomic)."""
    plain = read_decrypted(path, old)
    with atomic_open(path) as out:
        encrypt_stream(io.BytesIO(plain), out, new, chunk_size)


def rotate_tree(root: str | Path, old: KeySource, new: KeySource,
                chunk_size: int = DEFAULT_CHUNK) -> int:
    """Key rotation: re-encrypt every encrypted file under ``root`` from ``old`` to
    ``new``. Every file must open with the old key before any is rewritten."""
    files = [p for p in _files(Path(root)) if is_encrypted(p)]
    for p in files:
        with open(p, "rb") as f:
            open_header(f, old, str(p))
    for p in files:
        rotate_file(p, old, new, chunk_size)
    return len(files)
