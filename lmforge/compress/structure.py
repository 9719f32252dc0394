"""Swapped modules that a compressed model folder records, so that loading rebuilds them.

Some compression methods replace layers by modules of another kind: an ``nn.Linear``
becomes an int8 or int4 layer, or two thin linear layers (low rank). A model folder stores
the architecture's ``config.json``, which builds the original modules, so the folder's
``lmforge.json`` also records every swapped module::

    "modules": {"blocks.0.attn.qkv": {"kind": "int4", "in_features": 192, ...}, ...}

Loading builds the model from ``config.json``, replaces each recorded module by an empty
one of the recorded kind and shape (:func:`rebuild`), loads the weights as usual (names,
shapes and the checksum are checked), then calls ``after_load()`` on every module that
has one (an int8 layer re-packs its weights for its kernel). Nothing is re-quantised.

A swappable module class has

- ``kind``: a class attribute, its name in the record;
- ``spec() -> dict``: JSON-serialisable fields that fix its buffers' shapes and dtypes;
- ``from_spec(spec) -> module`` (classmethod): an empty module of those shapes;
- optionally ``after_load()``.

:data:`KINDS` maps a kind to ``"module:Class"``, imported only when a folder needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from ..errors import CheckpointError

KINDS: dict[str, str] = {
    "int8": "lmforge.compress.quantize:Int8Linear",
    "int8-embedding": "lmforge.compress.quantize:Int8Embedding",
    "int4": "lmforge.compress.int4:Int4Linear",
    "lowrank": "lmforge.compress.lowrank:LowRankLinear",
}


def module_class(kind: str) -> type[nn.Module]:
    """The class registered for ``kind``; :class:`CheckpointError` for an unknown one."""
    if kind not in KINDS:
        raise CheckpointError(f"unknown compressed module kind {kind!r} (known: "
                              f"{', '.join(sorted(KINDS))}); was the folder written by a "
                              "newer lmforge?")
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def record(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module path: {"kind": ..., **spec}}`` for every swapped module of ``model``."""
    classes = {module_class(k): k for k in KINDS if _importable(k)}
    out = {}
    for name, m in model.named_modules():
        kind = classes.get(type(m))
        if kind is not None:
            out[name] = {"kind": kind, **m.spec()}
    return out


def _importable(kind: str) -> bool:
    module = KINDS[kind].split(":")[0]
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def rebuild(model: nn.Module, modules: dict[str, dict[str, Any]], source: str = "") -> None:
    """Replace each recorded module of ``model`` by an empty one of its kind (in place)."""
    if not isinstance(modules, dict):
        raise CheckpointError(f"{source}: 'modules' must map module paths to specs")
    where = f"{source}: " if source else ""
    for name, spec in modules.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
            raise CheckpointError(f"{where}module {name!r} has no 'kind'")
        try:
            model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"{where}the model has no module {name!r} to "
                                  "replace") from None
        cls = module_class(spec["kind"])
        fields = {k: v for k, v in spec.items() if k != "kind"}
        try:
            new = cls.from_spec(fields)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}module {name!r} ({spec['kind']}) has an invalid "
                                  f"spec: {e}") from None
        model.set_submodule(name, new)


def after_load(model: nn.Module) -> None:
    """Call ``after_load()`` on every module that defines it (after the weights are in)."""
    for m in model.modules():
        hook = getattr(m, "after_load", None)
        if callable(hook):
            hook()
