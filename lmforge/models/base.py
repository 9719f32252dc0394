"""Saving and loading model folders (Hugging Face layout).

A model folder holds ``config.json`` (the config dataclass plus ``arch``),
``model.safetensors`` and ``lmforge.json`` (library version, architecture, SHA-256 of
the weights, provenance). Loading checks the checksum, the tensor names and the shapes,
and raises :class:`CheckpointError` naming the first problem; nothing loads partially.

Every file may be encrypted at rest: reads and writes go through
:mod:`lmforge.privacy.encrypted_io`, which decrypts in memory and encrypts when a key is
active (``using_key``). Checksums are of the plaintext, so ``lmforge encrypt`` and
``lmforge decrypt`` keep a folder verifiable.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save

from ..errors import CheckpointError, ConfigError, ModelInputError
from ..privacy.crypto import is_encrypted
from ..privacy.encrypted_io import load_safetensors, read_bytes, read_json, write_bytes, write_json

WEIGHTS = "model.safetensors"


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of the file's plaintext: an encrypted file is decrypted in memory
    with the active key (:mod:`lmforge.privacy.encrypted_io`)."""
    if is_encrypted(path):
        return hashlib.sha256(read_bytes(path)).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors stores each storage once)."""
    seen: dict[int, str] = {}
    out = {}
    for name, t in model.state_dict().items():
        key = t.data_ptr()
        if key in seen and t.numel():
            continue
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out


def save_model_folder(model: torch.nn.Module, path: str | Path,
                      provenance: dict[str, Any] | None = None) -> None:
    """Write config.json, model.safetensors and lmforge.json into ``path`` (each file
    atomically; encrypted when a key is active)."""
    from .. import __version__
    from . import arch_of

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    arch = arch_of(cfg)
    write_json(path / "config.json", {"arch": arch, **dataclasses.asdict(cfg)})
    weights = save(_unique_state_dict(model), metadata={"format": "pt"})
    write_bytes(path / WEIGHTS, weights)
    meta = {"lmforge_version": __version__, "arch": arch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": {WEIGHTS: hashlib.sha256(weights).hexdigest()}}
    meta.update(provenance or {})
    from ..compress.structure import record

    swapped = record(model)
    if swapped:
        meta["modules"] = swapped
    write_json(path / "lmforge.json", meta)


def read_config(path: str | Path) -> tuple[str, object]:
    """Read ``config.json`` of an lmforge model folder -> (arch, config dataclass)."""
    from pydantic import TypeAdapter, ValidationError

    from ..validation import format_validation_error
    from . import model_config_class

    p = Path(path) / "config.json"
    if not p.is_file():
        raise CheckpointError(f"{path} is not a model folder (no config.json)")
    raw = read_json(p)
    arch = raw.pop("arch", None)
    if arch is None:
        raise CheckpointError(f"{p} has no 'arch'; is this a Hugging Face folder? "
                              "Convert it with `lmforge convert`")
    try:
        cfg_cls = model_config_class(arch)
    except ConfigError as e:
        raise CheckpointError(f"{p}: {e}") from None
    try:
        return arch, TypeAdapter(cfg_cls).validate_python(raw)
    except ValidationError as e:
        raise CheckpointError(f"{p}: " + format_validation_error(e)) from None


def load_state_checked(model: torch.nn.Module, path: str | Path) -> None:
    """Load ``model.safetensors`` into ``model``; every tensor must match by name and shape."""
    path = Path(path)
    wfile = path / WEIGHTS
    if not wfile.is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS}")
    meta_file = path / "lmforge.json"
    if meta_file.is_file():
        sums = read_json(meta_file).get("sha256", {})
        if not isinstance(sums, dict):
            raise CheckpointError(f"{meta_file} is corrupt: expected a JSON object with a "
                                  "'sha256' mapping")
        want = sums.get(WEIGHTS)
        if want and sha256_file(wfile) != want:
            raise CheckpointError(f"{wfile} is corrupt or truncated (checksum mismatch)")
    try:
        state = load_safetensors(wfile)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{wfile} is corrupt or truncated: {e}") from None
    assign_state(model, state, str(wfile))


def assign_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                 source: str = "checkpoint") -> torch.nn.Module:
    """Load ``state`` (already renamed to lmforge names) into ``model``, strictly.

    Tied parameters (the same tensor under two names) need to be present only once.
    """
    expected = model.state_dict()
    by_ptr: dict[int, list[str]] = {}
    for name, t in expected.items():
        by_ptr.setdefault(t.data_ptr(), []).append(name)
    for name, t in expected.items():
        if name in state:
            got = tuple(state[name].shape)
            if got != tuple(t.shape):
                raise CheckpointError(f"{source}: tensor {name} has shape {got}, "
                                      f"model expects {tuple(t.shape)}")
            continue
        aliases = [a for a in by_ptr[t.data_ptr()] if a in state] if t.numel() else []
        if not aliases:
            raise CheckpointError(f"{source}: missing tensor {name} "
                                  f"(expected shape {tuple(t.shape)})")
    unused = sorted(set(state) - set(expected))
    if unused:
        raise CheckpointError(f"{source}: unexpected tensor {unused[0]} with shape "
                              f"{tuple(state[unused[0]].shape)} (not used by the model)")
    with torch.no_grad():
        for name, t in expected.items():
            if name in state:
                t.copy_(state[name].to(t.dtype))
    return model



def load_model_folder(path: str | Path, map_location: str = "cpu") -> torch.nn.Module:
    """Build the registered model from ``config.json`` and load its checked weights.

    Modules that compression swapped (int8/int4/low-rank layers, recorded under
    ``modules`` in ``lmforge.json``) are rebuilt first (:mod:`lmforge.compress.structure`)."""
    from ..compress.structure import after_load, rebuild
    from . import model_class

    arch, cfg = read_config(path)
    model = model_class(arch)(cfg)
    meta_file = Path(path) / "lmforge.json"
    swapped = read_json(meta_file).get("modules") if meta_file.is_file() else None
    if swapped:
        rebuild(model, swapped, str(meta_file))
    load_state_checked(model, path)
    after_load(model)
    return model.to(map_location).eval()


def check_dims(config, names: tuple[str, ...], heads_divide: bool = True) -> None:
    """Common config checks: each field in ``names`` >= 1, ``vocab_size`` (when set) >= 1,
    and (``heads_divide``: when the head size is derived from them) ``d_model`` divisible
    by ``n_head``; raises ValueError naming the field."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if getattr(config, "vocab_size", None) is not None and config.vocab_size < 1:
        raise ValueError("vocab_size must be >= 1")
    if heads_divide and config.d_model % config.n_head:
        raise ValueError(f"d_model={config.d_model} is not divisible by n_head={config.n_head}")


def check_special_ids(config, *vocab_fields: str) -> None:
    """``pad_id``, ``bos_id`` and ``eos_id`` differ and lie inside every vocabulary of
    ``vocab_fields`` that is set (a field left ``None`` is filled from the tokenizer
    later, and checked then); raises ValueError naming the id and the sizes."""
    ids = {"pad_id": config.pad_id, "bos_id": config.bos_id, "eos_id": config.eos_id}
    sizes = {f: getattr(config, f) for f in vocab_fields if getattr(config, f) is not None}
    for name, v in ids.items():
        if v < 0 or any(v >= n for n in sizes.values()):
            shown = ", ".join(f"{f}={n}" for f, n in sizes.items())
            raise ValueError(f"{name}={v} is outside the vocabularies ({shown})")
    if len(set(ids.values())) != 3:
        raise ValueError(f"pad_id, bos_id and eos_id must differ, got {ids}")


def require_vocab(config, *vocab_fields: str) -> None:
    """Raise ValueError when a vocabulary size is still ``None`` at model build time."""
    for f in vocab_fields:
        if getattr(config, f) is None:
            raise ValueError(f"{type(config).__name__}.{f} must be set before building the "
                             "model (a recipe run takes it from the tokenizer)")


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for registered models."""

    def save_pretrained(self, path: str | Path, provenance: dict | None = None) -> None:
        save_model_folder(self, path, provenance)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str = "cpu"):
        """The model saved in ``path`` (encrypted files need an active key:
        ``with lmforge.privacy.encrypted_io.using_key(key): ...``)."""
        model = load_model_folder(path, map_location)
        if not isinstance(model, cls):
            raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def check_ids(ids, name: str = "input_ids") -> tuple[int, int]:
    """``(B, T)`` of a token-id tensor; raise :class:`ModelInputError` naming ``name`` when
    it is not a 2-D integer tensor. Reads only metadata: no device sync."""
    if not isinstance(ids, torch.Tensor):
        raise ModelInputError(f"{name} must be a torch.Tensor of token ids (batch, seq_len), "
                              f"got {type(ids).__name__}")
    if ids.dim() != 2:
        hint = "; add a batch dimension with ids[None]" if ids.dim() == 1 else ""
        raise ModelInputError(f"{name} must have shape (batch, seq_len), got "
                              f"{tuple(ids.shape)}{hint}")
    if ids.dtype not in (torch.long, torch.int32):
        raise ModelInputError(f"{name} must hold integer token ids (torch.long or torch.int), "
                              f"got {ids.dtype}")
    return ids.shape[0], ids.shape[1]


def check_mask(mask, shape: tuple[int, int], name: str = "attention_mask") -> None:
    """A mask, when given, must be a tensor of exactly ``shape`` (no broadcasting)."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise ModelInputError(f"{name} must be a torch.Tensor of shape {tuple(shape)} "
                              f"(1 real token, 0 padding), got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ModelInputError(f"{name} must have the shape of the ids {tuple(shape)}, "
                              f"got {tuple(mask.shape)}")


def embed_ids(table: torch.nn.Embedding, ids: torch.Tensor, name: str = "input_ids",
              size_field: str = "vocab_size") -> torch.Tensor:
    """``table(ids)``, turning the lookup's bare ``IndexError`` (CPU) for an id outside
    ``[0, num_embeddings)`` into a :class:`ModelInputError`. Costs nothing when the ids
    are valid: the range is read only after the lookup failed. (On CUDA an invalid id is
    a device-side assert, which cannot be caught; checking first would need a sync.)"""
    if torch.compiler.is_compiling():
        return table(ids)
    try:
        return table(ids)
    except IndexError:
        n = table.num_embeddings
        lo, hi = int(ids.min()), int(ids.max())
        raise ModelInputError(f"{name} holds token ids in [{lo}, {hi}] but they must lie in "
                              f"[0, {n}) ({size_field}={n})") from None
