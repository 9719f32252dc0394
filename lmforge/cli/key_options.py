"""The encryption-key options shared by the commands: ``--key-file``, ``--key-env``,
``--passphrase-env`` (:func:`lmforge.privacy.keys.resolve_key`), and :func:`with_key`,
which adds them to a command that then runs with the key active
(:func:`lmforge.privacy.encrypted_io.using_key`): what it loads may be encrypted, and the
checkpoints and model folders it writes are encrypted."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

KeyFile = Annotated[Path | None, typer.Option(help="A key file (lmforge keygen).",
                                              metavar="FILE")]
KeyEnv = Annotated[str | None, typer.Option(help="An environment variable holding the key "
                                            "(64 hex digits).", metavar="VAR")]
PassEnv = Annotated[str | None, typer.Option(help="An environment variable holding a "
                                             "passphrase (scrypt derives the key).",
                                             metavar="VAR")]
KEY_PARAMS = (("key_file", KeyFile), ("key_env", KeyEnv), ("passphrase_env", PassEnv))


def optional_key(key_file: Path | None, key_env: str | None, passphrase_env: str | None):
    """The key of whichever option is given (one at most), or None when none is."""
    if key_file is None and key_env is None and passphrase_env is None:
        return None
    from ..privacy.keys import resolve_key

    return resolve_key(key_file, key_env, passphrase_env)


def with_key(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the three key options added (keyword-only, default None); it runs
    inside ``using_key(key)``, so the key reaches every reader and writer below it without
    being passed, stored in a config or logged."""
    sig = inspect.signature(command, eval_str=True)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=ann) for name, ann in KEY_PARAMS]

    @functools.wraps(command)
    def wrapper(*args: Any, key_file: Path | None = None, key_env: str | None = None,
                passphrase_env: str | None = None, **kwargs: Any) -> Any:
        from ..privacy.encrypted_io import using_key

        with using_key(optional_key(key_file, key_env, passphrase_env)):
            return command(*args, **kwargs)

    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), *extra])
    wrapper.__annotations__ = {**command.__annotations__, **dict(KEY_PARAMS)}
    return wrapper
