"""``lmforge keygen|encrypt|decrypt|rekey``: thin; parses the options and calls
:mod:`lmforge.privacy.crypto`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _echo, app
from .key_options import KeyEnv, KeyFile, PassEnv

Target = Annotated[Path, typer.Argument(help="A folder (every file in it) or one file.",
                                        metavar="PATH")]


@app.command(epilog="Example: lmforge keygen --out model.key")
def keygen(out: Annotated[Path, typer.Option(help="The key file to create (mode 0600).")]):
    """Write a new random AES-256 key (64 hex digits) to a file."""
    from ..privacy.keys import require_cryptography, write_new_key

    require_cryptography()
    _echo(f"wrote a new key to {write_new_key(out)}; keep it apart from what it encrypts")


def _apply(target: Path, source, one, tree) -> int:
    """``one(file, file, source)`` for a file, ``tree(folder, source)`` for a folder."""
    if target.is_file():
        one(target, target, source)
        return 1
    return tree(target, source)


@app.command(epilog="Example: lmforge encrypt runs/classify-sentiment --key-file model.key")
def encrypt(target: Target, key_file: KeyFile = None, key_env: KeyEnv = None,
            passphrase_env: PassEnv = None):
    """Encrypt a model folder, run, data folder or file in place with AES-256-GCM
    (chunked, tamper-evident); already encrypted files are skipped."""
    from ..privacy.crypto import encrypt_file, encrypt_tree
    from ..privacy.keys import resolve_key

    n = _apply(target, resolve_key(key_file, key_env, passphrase_env), encrypt_file,
               encrypt_tree)
    _echo(f"encrypted {n} file(s) under {target}")


@app.command(epilog="Example: lmforge decrypt runs/classify-sentiment --key-file model.key")
def decrypt(target: Target, key_file: KeyFile = None, key_env: KeyEnv = None,
            passphrase_env: PassEnv = None):
    """Decrypt in place; every file is verified before any is written."""
    from ..privacy.crypto import decrypt_file, decrypt_tree
    from ..privacy.keys import resolve_key

    n = _apply(target, resolve_key(key_file, key_env, passphrase_env), decrypt_file,
               decrypt_tree)
    _echo(f"decrypted {n} file(s) under {target}")


@app.command(epilog="Example: lmforge rekey runs/clf --key-file old.key --new-key-file new.key")
def rekey(target: Target, key_file: KeyFile = None, key_env: KeyEnv = None,
          passphrase_env: PassEnv = None,
          new_key_file: Annotated[Path | None, typer.Option(help="The new key file.",
                                                            metavar="FILE")] = None,
          new_key_env: Annotated[str | None, typer.Option(help="Variable with the new key.",
                                                          metavar="VAR")] = None,
          new_passphrase_env: Annotated[str | None, typer.Option(
              help="Variable with the new passphrase.", metavar="VAR")] = None):
    """Key rotation: re-encrypt every encrypted file from the old key to the new one
    (plaintext only in memory)."""
    from ..errors import ConfigError
    from ..privacy.crypto import rotate_file, rotate_tree
    from ..privacy.keys import resolve_key

    old = resolve_key(key_file, key_env, passphrase_env)
    try:
        new = resolve_key(new_key_file, new_key_env, new_passphrase_env)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--key", "--new-key").replace(
            "--passphrase", "--new-passphrase")) from None
    n = _apply(target, (old, new), lambda p, _q, keys: rotate_file(p, *keys),
               lambda root, keys: rotate_tree(root, *keys))
    _echo(f"re-encrypted {n} file(s) under {target}")
