"""Hugging Face checkpoints in and out.

Each model family registers an :class:`HFConverter` that maps between a Hugging Face
``config.json`` + state dict and an lmforge model. ``lmforge.hub`` dispatches on the
folder's ``model_type`` (loading) or the lmforge ``arch`` (exporting).

Loading is strict: :func:`assign_state` checks that every tensor the lmforge model needs
is present with the right shape and that no checkpoint tensor is left unused, raising a
:class:`~lmforge.errors.CheckpointError` that names the tensor and both shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..models.base import assign_state as assign_state  # re-exported for the converters
from ..privacy.encrypted_io import read_json

HFState = dict[str, torch.Tensor]


@dataclass(frozen=True)
class HFConverter:
    """How one family moves between Hugging Face and lmforge.

    ``load(hf_config, hf_state) -> model`` builds the lmforge model with the weights in
    place. ``export(model) -> (hf_config, hf_state)`` gives what ``transformers`` needs
    to load it (None when the family is import-only).
    """

    model_types: tuple[str, ...]
    archs: tuple[str, ...]
    load: Callable[[dict, HFState], torch.nn.Module]
    export: Callable[[torch.nn.Module], tuple[dict, HFState]] | None = None


_CONVERTERS: list[HFConverter] = []


def register_hf(converter: HFConverter) -> None:
    _CONVERTERS.append(converter)


def _ensure_builtin() -> None:
    import importlib

    for name in ("gpt", "bert", "t5", "deberta"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def converter_for_model_type(model_type: str) -> HFConverter:
    _ensure_builtin()
    for c in _CONVERTERS:
        if model_type in c.model_types:
            return c
    supported = sorted({t for c in _CONVERTERS for t in c.model_types})
    raise CheckpointError(f"unsupported Hugging Face model_type {model_type!r}; "
                          f"supported: {', '.join(supported)}")


def converter_for_arch(arch: str) -> HFConverter:
    _ensure_builtin()
    for c in _CONVERTERS:
        if arch in c.archs and c.export is not None:
            return c
    supported = sorted({a for c in _CONVERTERS if c.export for a in c.archs})
    raise CheckpointError(f"lmforge arch {arch!r} cannot be exported to Hugging Face; "
                          f"supported: {', '.join(supported)}")


def read_hf_config(path: str | Path) -> dict:
    """The ``config.json`` object of a Hugging Face folder, decrypted in memory when it is
    encrypted at rest (with the active key: :mod:`lmforge.privacy.encrypted_io`)."""
    p = Path(path) / "config.json"
    if not p.is_file():
        raise CheckpointError(f"{path} has no config.json")
    return read_json(p)
