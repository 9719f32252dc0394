"""Where an encryption key comes from: a key file, an environment variable, or a passphrase
stretched with scrypt.

A key is 32 random bytes (AES-256). A key file holds them as 64 hex digits (what
``lmforge keygen`` writes, mode 0600) or as the raw 32 bytes; an environment variable holds
the 64 hex digits. A passphrase is turned into a key by scrypt (Percival 2009) with
``N = 2^15, r = 8, p = 1`` and a random 16-byte salt stored in each file's header, so the
same passphrase gives a different key per file and a stolen file must be attacked alone.
The key material is never logged or put into an error message.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_bytes

KEY_BYTES = 32
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1


def require_cryptography():
    try:
        import cryptography  # noqa: F401
    except ImportError as e:
        raise ConfigError("encryption needs the 'privacy' extra: pip install "
                          "'lmforge[privacy]'") from e


@dataclass(frozen=True)
class KeySource:
    """A raw key, or a passphrase whose key depends on each file's salt."""

    key: bytes | None = None
    passphrase: bytes | None = None

    def __repr__(self) -> str:  # never show key material
        return "KeySource(passphrase)" if self.passphrase is not None else "KeySource(key)"

    def derive(self, salt: bytes) -> bytes:
        """The 32-byte key for a file with this header salt."""
        if self.key is not None:
            return self.key
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        return Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R,
                      p=SCRYPT_P).derive(self.passphrase)

    @property
    def uses_passphrase(self) -> bool:
        return self.passphrase is not None


def _parse_key(data: bytes, where: str) -> bytes:
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_BYTES:
        return data
    raise ConfigError(f"{where} is not a key: expected {2 * KEY_BYTES} hex digits or "
                      f"{KEY_BYTES} raw bytes (make one with lmforge keygen)")


def key_from_file(path: str | Path) -> KeySource:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"key file {p} not found")
    return KeySource(key=_parse_key(p.read_bytes(), f"key file {p}"))


def key_from_env(name: str) -> KeySource:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (it should hold the key "
                          f"as {2 * KEY_BYTES} hex digits)")
    return KeySource(key=_parse_key(value.encode(), f"environment variable {name}"))


def passphrase_from_env(name: str) -> KeySource:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (it should hold the "
                          "passphrase)")
    return KeySource(passphrase=value.encode("utf-8"))


def resolve_key(key_file: str | Path | None = None, key_env: str | None = None,
                passphrase_env: str | None = None) -> KeySource:
    """Exactly one of the three sources."""
    given = [x is not None for x in (key_file, key_env, passphrase_env)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --key-file, --key-env, --passphrase-env")
    require_cryptography()
    if key_file is not None:
        return key_from_file(key_file)
    if key_env is not None:
        return key_from_env(key_env)
    return passphrase_from_env(passphrase_env)


def write_new_key(path: str | Path) -> Path:
    """A fresh random key as hex in ``path`` (mode 0600); an existing file is kept."""
    p = Path(path)
    if p.exists():
        raise ConfigError(f"{p} exists; keygen never overwrites a key")
    atomic_write_bytes(p, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
    p.chmod(0o600)
    return p
