"""Checkpoints of distributed runs, through ``torch.distributed.checkpoint`` (DCP).

A distributed run's checkpoint folder is an ordinary one (:mod:`lmforge.train.checkpoint`:
a loadable model folder, ``trainer_state.json`` with checksums, ``optimizer.pt``) plus::

    dcp/                 # DCP: every rank writes its own shards of the weights and of the
      __0_0.distcp       #   AdamW moments (replicated tensors once), with .metadata
      .metadata          #   naming each tensor by its parameter name (FQN)

``model.safetensors`` holds the full fp32 weights (gathered to rank 0), so ``generate``,
``evaluate`` and the hub load the folder as they load any other. ``optimizer.pt`` keeps
the schedule, every rank's RNG state and the objective's state, with ``"optimizer":
"dcp"`` in place of the optimizer state.

Resuming reads ``dcp/`` into whatever layout the new run has: another number of
processes, another strategy, or one plain process (DCP reshards by name). A plain
single-process checkpoint resumes into a distributed run through the full state dicts
(:func:`load_full_state`). Rank 0 stages the folder under a hidden name, the other ranks
write their shards into it, and rank 0 renames it into place once all have finished,
so a ``step_*`` folder is always complete.

These checkpoints are never encrypted (every rank writes its own ``dcp/`` shards with
``torch.distributed.checkpoint``), so :func:`save_sharded_checkpoint` refuses to run
while an encryption key is active (:func:`lmforge.privacy.encrypted_io.using_key`):
a run meant to be encrypted never leaves a partly plaintext checkpoint.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..distributed.env import barrier, broadcast_object
from ..errors import CheckpointError, ConfigError
from ..io import atomic_dir
from ..models.base import WEIGHTS, assign_state, save_model_folder, sha256_file
from ..privacy.encrypted_io import active_key
from . import checkpoint as ck

DCP_DIR = "dcp"
SHARDED = "dcp"  # the value of payload["optimizer"] in a sharded checkpoint


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / DCP_DIR).is_dir()


def _state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    return {"model": msd, "optim": osd}


def _full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight as one full CPU tensor (a collective: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def _plain_copy(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """An unsharded model of the same config holding ``weights`` (for the model folder)."""
    from ..models import build_model

    plain = build_model(model.config)
    assign_state(plain, weights, "the gathered weights")
    return plain


def _gather_objects(obj: Any) -> list:
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def save_sharded_checkpoint(path: str | Path, model: nn.Module,
                            optimizer: torch.optim.Optimizer, *, trainer_state: dict,
                            optimizer_payload: dict, tokenizer: Any = None,
                            provenance: dict | None = None,
                            weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint folder from every rank (all ranks call this); returns its path.

    ``model`` is what this rank trains (the model, sharded or not, or a pipeline stage);
    ``weights`` the whole model's (default: gathered from ``model``).
    ``optimizer_payload`` is rank 0's (schedule, objective state); its ``rng`` becomes
    the list of every rank's RNG state. Raises :class:`ConfigError`, before anything is
    written, while an encryption key is active (module docstring)."""
    import torch.distributed.checkpoint as dcp

    if active_key() is not None:
        raise ConfigError("sharded checkpoints (train.distributed) are not encrypted: "
                          "refusing to save one while an encryption key is active; "
                          "train with train.distributed=none for encrypted checkpoints")
    path = Path(path)
    main = not dist.is_initialized() or dist.get_rank() == 0
    states = _state_dicts(model, optimizer)
    weights = _full_weights(model) if weights is None else weights
    rngs = _gather_objects(optimizer_payload.get("rng"))
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(path)) if main else None
        tmp = Path(str(broadcast_object(str(tmp) if tmp is not None else None)))
        dcp.save(states, checkpoint_id=tmp / DCP_DIR)
        barrier()
        if main:
            save_model_folder(_plain_copy(model, weights), tmp, provenance)
            if tokenizer is not None:
                tokenizer.save(tmp)
            payload = {**optimizer_payload, "optimizer": SHARDED, "rng": rngs[0],
                       "rng_ranks": rngs}
            torch.save(payload, tmp / ck.OPTIMIZER)
            sums = {f.relative_to(tmp).as_posix(): sha256_file(f)
                    for f in sorted(tmp.rglob("*")) if f.is_file() and f.name != WEIGHTS}
            state = {"format": ck.STATE_FORMAT, "version": ck.STATE_VERSION,
                     **trainer_state, "world_size": len(rngs), "sha256": sums}
            (tmp / ck.STATE).write_text(json.dumps(state, indent=2, ensure_ascii=False)
                                        + "\n", encoding="utf-8")
    barrier()  # the folder is in place before any rank goes on (or prunes)
    return path


def load_sharded_state(path: str | Path, model: nn.Module,
                       optimizer: torch.optim.Optimizer) -> None:
    """Load ``dcp/`` into ``model`` and ``optimizer`` as they are laid out now (sharded,
    replicated or plain; without a process group DCP loads in this process alone)."""
    import warnings

    from torch.distributed.checkpoint.state_dict import set_state_dict

    from .dcp_safe import safe_load

    states = _state_dicts(model, optimizer)
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process"
            warnings.simplefilter("ignore", UserWarning)
            safe_load(states, Path(path) / DCP_DIR)  # no pickle from the folder runs code
    except Exception as e:  # DCP raises CheckpointException, RuntimeError, KeyError, ...
        text = str(e).strip().splitlines()
        raise CheckpointError(f"{Path(path) / DCP_DIR} cannot be loaded into this model: "
                              f"{text[0] if text else type(e).__name__}") from None
    set_state_dict(model, optimizer, model_state_dict=states["model"],
                   optim_state_dict=states["optim"])


def fqn_optimizer_state(plain: dict, whole: nn.Module, keep: set[str]) -> dict:
    """A ``torch.optim`` state dict of the whole model, keyed by parameter index, turned
    into the by-name form of ``torch.distributed.checkpoint.state_dict`` and cut to the
    parameters in ``keep`` (a pipeline stage's; all of them otherwise). The indices
    follow :func:`~lmforge.train.optim.param_groups` of the whole model, the order every
    trainer builds its optimizer in."""
    from .optim import param_groups

    names = {id(p): n for n, p in whole.named_parameters()}
    order = [names[id(p)] for g in param_groups(whole, 0.0) for p in g["params"]]
    groups = plain.get("param_groups", [])
    n_saved = sum(len(g["params"]) for g in groups)
    if n_saved != len(order):
        raise CheckpointError(f"the checkpoint's optimizer holds {n_saved} parameters but "
                              f"this model has {len(order)}")
    named = [[order[int(i)] for i in g["params"]] for g in groups]
    return {"state": {order[int(i)]: s for i, s in plain.get("state", {}).items()
                      if order[int(i)] in keep},
            "param_groups": [{**g, "params": [n for n in names_ if n in keep]}
                             for g, names_ in zip(groups, named, strict=True)
                             if any(n in keep for n in names_)]}


def load_full_state(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    whole: nn.Module | None = None) -> None:
    """Load a plain (single-process) checkpoint into a distributed layout: each rank reads
    the full weights and AdamW state and keeps its part. ``model`` is what this rank
    trains; ``whole`` the whole model it is part of (a pipeline stage's GPT)."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    path = Path(path)
    whole = model if whole is None else whole
    weights = load_file(str(path / WEIGHTS))
    for name, source in _tied_aliases(whole).items():  # tied weights are stored once
        if name not in weights and source in weights:
            weights[name] = weights[source]
    own = set(model.state_dict())
    keep = {n for n, _p in model.named_parameters(remove_duplicate=False)}
    plain = ck.load_optimizer_payload(path)["optimizer"]
    set_state_dict(model, optimizer,
                   model_state_dict={k: v for k, v in weights.items() if k in own},
                   optim_state_dict=fqn_optimizer_state(plain, whole, keep),
                   options=StateDictOptions(full_state_dict=True))


def _tied_aliases(model: nn.Module) -> dict[str, str]:
    """Second names of shared parameters -> their first name."""
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


__all__ = ["save_sharded_checkpoint", "load_sharded_state", "load_full_state",
           "fqn_optimizer_state", "is_sharded", "DCP_DIR", "SHARDED"]
