"""Validation helpers shared by every layer: strict pydantic sections and one-line errors.

:class:`Section` is the base of every options section (a recipe's ``run:``, ``data:``,
``train:``, ...): unknown keys are errors and assignments are validated too.
:func:`format_validation_error` turns a pydantic :class:`ValidationError` into one line,
``config error: field: problem (allowed: ...)``.

This module knows nothing above it (no models, no recipes), so the library's lower
layers (models, the trainer) can use it without importing :mod:`lmforge.config`. What
only a caller knows, such as the fields allowed in a recipe's ``model:`` section (they
depend on its ``arch``), comes in through the ``allowed_at`` argument.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """A strict options section: unknown keys are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def allowed_fields(model: type | None, loc: tuple) -> list[str]:
    """Names allowed at ``loc`` (the parent of an unknown key) of the pydantic ``model``."""

    node: Any = model
    for part in loc:
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            return []
        node = fields[part].annotation
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def format_validation_error(err: ValidationError, root: type | None = None,
                            allowed_at: Callable[[tuple], list[str] | None] | None = None
                            ) -> str:
    """Turn a pydantic error into one line: ``field: problem (allowed: ...)``.

    For an unknown key, the allowed names come from ``allowed_at(parent_loc)`` when it
    returns a list, else from the fields of ``root`` at that location.
    """
    parts = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        name = ".".join(str(x) for x in loc) or "(top level)"
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            parent, key = loc[:-1], loc[-1]
            allowed = allowed_at(parent) if allowed_at is not None else None
            if allowed is None:
                allowed = allowed_fields(root, parent)
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            msg = f"{name}: unknown field"
            if hint:
                msg += f" (did you mean {hint[0]!r}?)"
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif e["type"] == "literal_error":
            msg = f"{name}: {e['input']!r} is not allowed; {e['msg'].lower()}"
        else:
            got = e.get("input")
            got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            msg = f"{name}: {e['msg'][0].lower()}{e['msg'][1:]}{got_s}"
        parts.append(msg)
    return "config error: " + "; ".join(parts)
