"""Optional dependencies: import one, or say in one line which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`ConfigError` naming the extra that provides it:
    ``"phone recognition needs phonenumbers: pip install 'lmforge[privacy]'"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs {module}: pip install 'lmforge[{extra}]'"
                          ) from None
