"""Which layers a compression method touches: module paths chosen by name patterns.

A pattern names a module by its path in ``model.named_modules()`` (``blocks.0.attn.qkv``),
by its trailing components (``qkv`` or ``attn.qkv`` match every such module: PEFT's rule
for ``target_modules``), and may hold shell wildcards (``blocks.*.mlp.*``, ``*proj``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from torch import nn


def matches(name: str, pattern: str) -> bool:
    """Whether the module path ``name`` is named by ``pattern`` (see the module doc)."""
    return fnmatchcase(name, pattern) or fnmatchcase(name, "*." + pattern)


def first_match(name: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` that names ``name``, or None."""
    return next((p for p in patterns if matches(name, p)), None)


def named_layers(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...],
                 include: Sequence[str] | None = None,
                 skip: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every ``kind`` module (an instance) of ``model`` that ``include``
    names (all when None) and ``skip`` does not, in ``named_modules`` order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, kind)
            and (include is None or first_match(name, include) is not None)
            and first_match(name, skip) is None]
