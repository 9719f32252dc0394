"""Reading and writing Hugging Face model folders.

A Hugging Face folder holds ``config.json`` (with ``model_type``) and the weights in one
of four layouts, all read by :func:`read_hf_state`:

- ``model.safetensors``;
- ``model.safetensors.index.json`` + shards (``{"weight_map": {tensor: file}}``);
- ``pytorch_model.bin`` (a pickled state dict, read with ``torch.load(weights_only=True)``
  so that no code in the file runs);
- ``pytorch_model.bin.index.json`` + ``.bin`` shards.

:func:`write_hf_folder` writes ``config.json``, ``model.safetensors`` and the tokenizer
files into a staged folder that is renamed into place only when complete
(:func:`lmforge.io.atomic_dir`). An lmforge folder is told apart by the ``arch`` key in
its ``config.json`` (:func:`is_hf_folder`).

Any of the files read may be encrypted at rest (``lmforge encrypt``): they are decrypted in
memory with the active key (:mod:`lmforge.privacy.encrypted_io`), never to disk.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..io import atomic_dir, atomic_write_json, torch_load_error
from ..paths import child_path
from ..privacy.encrypted_io import load_safetensors, read_text, torch_load

__all__ = ["SAFETENSORS", "SAFETENSORS_INDEX", "PT_BIN", "PT_BIN_INDEX", "is_hf_folder",
           "hf_weight_files", "read_hf_state", "write_hf_folder", "dedupe_shared"]

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PT_BIN = "pytorch_model.bin"
PT_BIN_INDEX = "pytorch_model.bin.index.json"


def is_hf_folder(path: str | Path) -> bool:
    """True when ``path`` has a ``config.json`` with ``model_type`` and no lmforge ``arch``."""
    p = Path(path) / "config.json"
    if not p.is_file():
        return False
    try:
        cfg = json.loads(read_text(p))
    except (OSError, ValueError, RecursionError):  # bad UTF-8 or JSON, nested too deep
        return False
    return isinstance(cfg, dict) and "model_type" in cfg and "arch" not in cfg


def _read_index(index: Path) -> dict[str, str]:
    try:
        obj = json.loads(read_text(index))
        weight_map = obj["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index} is corrupt: {e}") from None
    return {str(k): str(v) for k, v in weight_map.items()}


def hf_weight_files(path: str | Path) -> list[Path]:
    """The weight files of a Hugging Face folder, safetensors preferred."""
    folder = Path(path)
    if (folder / SAFETENSORS).is_file():
        return [folder / SAFETENSORS]
    for index_name in (SAFETENSORS_INDEX, PT_BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            files = [child_path(folder, f, CheckpointError, str(index))
                     for f in sorted(set(_read_index(index).values()))]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shard "
                                      f"{missing[0].relative_to(folder)}, which is missing")
            return files
    if (folder / PT_BIN).is_file():
        return [folder / PT_BIN]
    raise CheckpointError(f"{folder} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX}, "
                          f"{PT_BIN} or {PT_BIN_INDEX})")


def _read_one(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        try:
            return load_safetensors(file)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{file} is corrupt or truncated: "
                                  f"{str(e).splitlines()[0]}") from None
    try:
        state = torch_load(file)
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise CheckpointError(f"{file} is corrupt or truncated: {torch_load_error(e)}"
                              ) from None
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file} does not hold a state dict of tensors")
    return dict(state)


def read_hf_state(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face folder, by their Hugging Face names.

    A truncated or corrupt weight file, a missing shard or a tensor stored twice raises a
    :class:`CheckpointError` naming the file.
    """
    state: dict[str, torch.Tensor] = {}
    for file in hf_weight_files(path):
        for name, t in _read_one(file).items():
            if name in state:
                raise CheckpointError(f"{file}: tensor {name} also appears in another shard")
            state[name] = t
    return state


def dedupe_shared(state: Mapping[str, torch.Tensor],
                  drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A copy of ``state`` that ``safetensors`` can store: no two tensors share memory.

    Of tensors sharing storage, names in ``drop`` (the tied duplicates the loader
    re-creates, such as ``lm_head.weight`` when ``tie_word_embeddings``) are dropped and
    the others cloned. Every tensor is made contiguous and moved to the CPU.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    # Keep the names that must stay first so that a dropped duplicate never wins.
    order = sorted(state, key=lambda n: n in drop)
    for name in order:
        t = state[name].detach()
        key = (t.untyped_storage().data_ptr(), t.device.index or 0) if t.numel() else None
        if key is not None and key in seen:
            if name in drop:
                continue
            t = t.clone()
        elif key is not None:
            seen.add(key)
        out[name] = t.contiguous().cpu()
    return {n: out[n] for n in state if n in out}


def write_hf_folder(path: str | Path, hf_config: dict[str, Any],
                    state: Mapping[str, torch.Tensor], tokenizer: Any = None,
                    extra_files: Mapping[str, Any] | None = None) -> Path:
    """Write a Hugging Face folder: ``config.json``, ``model.safetensors`` and, with a
    :class:`~lmforge.tokenize.Tokenizer`, ``tokenizer.json`` + ``tokenizer_config.json``.

    The folder is staged and renamed into place at the end, so ``path`` holds either its
    old content or the complete new one. Tensors sharing memory are cloned, except
    ``lm_head.weight`` under ``tie_word_embeddings``, which is dropped (``transformers``
    ties it again on load). ``extra_files`` maps file names to JSON objects
    (``generation_config.json``, ...).
    """
    if "model_type" not in hf_config:
        raise ValueError("hf_config needs a 'model_type'")
    drop = ("lm_head.weight",) if hf_config.get("tie_word_embeddings") else ()
    tensors = dedupe_shared(state, drop)
    path = Path(path)
    with atomic_dir(path) as tmp:
        atomic_write_json(tmp / "config.json", hf_config)
        save_file(tensors, str(tmp / SAFETENSORS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        for name, obj in (extra_files or {}).items():
            atomic_write_json(tmp / name, obj)
    return path
