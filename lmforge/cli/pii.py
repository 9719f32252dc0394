"""``lmforge data redact``: thin; parses the options and calls
:mod:`lmforge.privacy.pii.redact_files`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from . import _echo, data_app


def read_salt(salt_file: Path | None, salt_env: str | None) -> bytes | None:
    """The HMAC salt from a file or an environment variable (None: neither given)."""
    if salt_file is not None and salt_env is not None:
        raise ConfigError("give the salt with --salt-file or --salt-env, not both")
    if salt_file is not None:
        try:
            salt = salt_file.read_bytes().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the salt file {salt_file}: {e.strerror or e}"
                              ) from None
    elif salt_env is not None:
        if salt_env not in os.environ:
            raise ConfigError(f"the environment variable {salt_env} (--salt-env) is not set")
        salt = os.environ[salt_env].encode()
    else:
        return None
    if len(salt) < 16:
        raise ConfigError("the salt must be at least 16 bytes (e.g. lmforge keygen --out "
                          "salt.key)")
    return salt


@data_app.command("redact", epilog="Example: lmforge data redact chats.jsonl --out "
                                   "chats.redacted.jsonl --types PHONE,ID_CN --operator mask")
def data_redact(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs (.txt, .jsonl, "
                                                     ".csv).", metavar="INPUT...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (one input) or "
                                                          "folder.")],
    types: Annotated[str | None, typer.Option(
        help="Comma-separated PII types (default: all): EMAIL, PHONE, ID_CN, BANK_CARD, "
             "PASSPORT, IP, URL, DATE_OF_BIRTH, ADDRESS, PERSON.")] = None,
    operator: Annotated[str, typer.Option(
        help="mask ([PHONE]), redact (delete), hash (salted HMAC pseudonym) or fake "
             "(realistic value of the same format).")] = "mask",
    field: Annotated[list[str] | None, typer.Option(
        "--field", help="JSONL field or CSV column to redact (repeatable; default: all).",
        metavar="NAME")] = None,
    threshold: Annotated[float, typer.Option(help="Minimum recognizer score, in (0, 1].")]
    = 0.5,
    salt_file: Annotated[Path | None, typer.Option(
        help="hash/fake: file with the secret salt (keeps pseudonyms stable across runs).",
        metavar="FILE")] = None,
    salt_env: Annotated[str | None, typer.Option(
        help="hash/fake: environment variable with the secret salt.", metavar="VAR")] = None,
):
    """Find and replace personal data (Chinese and English) in text files, streaming;
    each file keeps its format."""
    from ..privacy.pii.redact_files import make_redactor, redact_inputs

    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")
    salt = read_salt(salt_file, salt_env)
    if salt is None and operator in ("hash", "fake"):
        salt = secrets.token_bytes(32)
        _echo(f"no --salt-file: a random salt, so {operator} values are consistent within "
              "this run only")
    redactor = make_redactor(types.split(",") if types is not None else None, operator,
                             salt or b"", threshold)
    written = redact_inputs(inputs, out, redactor, field)
    found = ", ".join(f"{k} {v}" for k, v in sorted(redactor.counts.items())) or "no PII"
    _echo(f"wrote {len(written)} file(s) to {out}: {found}")
