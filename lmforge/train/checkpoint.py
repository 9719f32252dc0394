"""Training checkpoints: atomic, checksummed, resumable.

Layout of a run folder::

    RUN/checkpoints/step_0000500/
        config.json          # model config (+ arch)            } a loadable model folder:
        model.safetensors    # fp32 weights                     } load_model_folder(path)
        lmforge.json         # version, SHA-256 of the weights, provenance, training info
        tokenizer.json       # when the trainer was given a tokenizer
        trainer_state.json   # step, best/val loss, tokens seen, early-stopping history,
                             #   data position, train config, SHA-256 of the other files
        optimizer.pt         # AdamW state, schedule, RNG states (torch, CUDA, numpy, random),
                             #   the objective's state when it has one (TBPTT's hidden state)

Each folder is staged under a hidden temporary name, fsync-ed and renamed into place
(:func:`lmforge.io.atomic_dir`), so a folder named ``step_*`` is always complete: a kill
leaves only a hidden ``.step_*.tmp`` folder, which the next run removes.
``trainer_state.json`` is written last and records checksums of the other files, and
:func:`verify_checkpoint` checks all of them, so a file truncated or damaged later is
reported by name (:class:`~lmforge.errors.CheckpointError`) instead of loading garbage.

**Encrypted checkpoints.** Inside ``with lmforge.privacy.encrypted_io.using_key(key):``
every file of a checkpoint is written encrypted (AES-256-GCM, :mod:`lmforge.privacy.crypto`)
straight from memory into the staging folder, so no plaintext reaches the disk and the
folder is still renamed into place atomically; reading decrypts in memory
(``torch.load`` on ``io.BytesIO``). The checksums are of the plaintext. The key is never
stored: not in the trainer state, not in the train config.
"""

from __future__ import annotations

import dataclasses
import io
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, LmforgeError
from ..io import atomic_dir, fsync_dir, torch_load_error
from ..models.base import WEIGHTS, load_state_checked, read_config, save_model_folder, sha256_file
from ..paths import child_path
from ..privacy.encrypted_io import (
    active_key,
    check_key,
    read_json,
    torch_load,
    write_bytes,
    write_json,
)

CHECKPOINTS = "checkpoints"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
TOKENIZER = "tokenizer.json"
STATE_FORMAT = "lmforge-trainer-state"
STATE_VERSION = 1
_STEP_RE = re.compile(r"^step_(\d{7,})$")
_REQUIRED_KEYS = ("step", "seed", "sha256", "config")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (hidden temp folders skipped)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    m = _STEP_RE.match(Path(path).name)
    if not m:
        raise CheckpointError(f"{path} is not a checkpoint folder (expected step_NNNNNNN)")
    return int(m.group(1))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the lowest selection score (earliest on ties), or None when no
    checkpoint has one. The score is the validation loss, or ``±best_metric`` for runs
    that select on another metric (``score`` in the trainer state: lower is better).
    Unreadable checkpoints are skipped."""
    best, best_loss = None, None
    for p in list_checkpoints(run_dir):
        try:
            state = read_trainer_state(p)
        except CheckpointError:
            continue
        loss = state.get("score", state.get("val_loss"))
        if isinstance(loss, (int, float)) and (best_loss is None or loss < best_loss):
            best, best_loss = p, float(loss)
    return best


def read_trainer_state(path: str | Path) -> dict:
    """Parse and sanity-check ``trainer_state.json`` of a checkpoint folder."""
    f = Path(path) / STATE
    if not f.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: {STATE} is missing")
    state = read_json(f)
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{f} is corrupt: not an lmforge trainer state")
    missing = [k for k in _REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{f} is corrupt: missing {', '.join(missing)}")
    for key, ok, want in _FIELD_TYPES:
        if key in state and not ok(state[key]):
            raise CheckpointError(f"{f} is corrupt: {key} should be {want}, "
                                  f"got {state[key]!r}")
    return state


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# (key, check, what it should be) for the trainer-state fields that are read back.
_FIELD_TYPES: tuple[tuple[str, Any, str], ...] = (
    ("step", _is_int, "an integer"),
    ("seed", _is_int, "an integer"),
    ("sha256", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
     "a mapping of file names to checksums"),
    ("config", lambda v: v is None or isinstance(v, dict), "a mapping"),
    ("val_loss", lambda v: v is None or _is_num(v), "a number or null"),
    ("score", lambda v: v is None or _is_num(v), "a number or null"),
    ("best_val_loss", lambda v: v is None or _is_num(v), "a number or null"),
    ("best_step", lambda v: v is None or _is_int(v), "an integer or null"),
    ("tokens_seen", _is_int, "an integer"),
    ("elapsed", _is_num, "a number"),
    ("early_stopping", lambda v: isinstance(v, dict) and (
        v.get("reference") is None or _is_num(v["reference"])) and _is_int(
        v.get("evals_without_improvement", 0)), "a mapping of numbers"),
    ("eval_history", lambda v: isinstance(v, list), "a list"),
)


def verify_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict:
    """Check every file of a checkpoint (presence, checksums, model config) without
    loading anything; returns the trainer state. Raises a one-line CheckpointError (a
    ConfigError when the checkpoint is encrypted and the active key does not open it)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / STATE).is_file():
        check_key(path / STATE)  # a missing or wrong key is the user's: a ConfigError
    state = read_trainer_state(path)
    for name in ("config.json", WEIGHTS, "lmforge.json", OPTIMIZER):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
    meta = read_json(path / "lmforge.json")
    try:
        want_w = meta["sha256"][WEIGHTS]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path / 'lmforge.json'} is corrupt: {e}") from None
    if sha256_file(path / WEIGHTS) != want_w:
        raise CheckpointError(f"{path / WEIGHTS} is corrupt or truncated (checksum mismatch)")
    for name, want in dict(state["sha256"]).items():
        f = child_path(path, name, CheckpointError, f"{path / STATE} sha256")
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        if sha256_file(f) != want:
            raise CheckpointError(f"{f} is corrupt or truncated (checksum mismatch)")
    if model is not None:
        check_model_config(path, model)
    return state


def check_model_config(path: str | Path, model: nn.Module) -> None:
    """The checkpoint's ``config.json`` must describe the same architecture as ``model``."""
    from ..models import arch_of

    arch, cfg = read_config(path)
    mcfg = getattr(model, "config", None)
    if mcfg is None or not dataclasses.is_dataclass(mcfg):
        return
    if arch != arch_of(mcfg):
        raise CheckpointError(f"checkpoint {path} holds a {arch!r} model, but the model "
                              f"being trained is {arch_of(mcfg)!r}")
    a, b = dataclasses.asdict(cfg), dataclasses.asdict(mcfg)
    diff = [f"{k}={a.get(k)!r} (model has {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]
    if diff:
        raise CheckpointError(f"checkpoint {path} was trained with a different model config: "
                              + ", ".join(diff))


# ----------------------------------------------------------------------------- RNG

def get_rng_state() -> dict:
    """Every RNG the training loop can touch, as tensors and plain Python values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- save / load

def save_checkpoint(path: str | Path, model: nn.Module, *, trainer_state: dict,
                    optimizer_payload: dict, tokenizer: Any = None,
                    provenance: dict | None = None) -> Path:
    """Write a checkpoint folder atomically; returns its path.

    ``optimizer_payload`` (optimizer/scheduler/RNG state: tensors and plain values only)
    goes to ``optimizer.pt``; ``trainer_state`` is completed with the format tag and the
    SHA-256 of every other file (``optimizer.pt``, the tokenizer files, ``config.json``,
    ``lmforge.json``; the weights' is in ``lmforge.json``) and written last.
    """
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_model_folder(model, tmp, provenance)
        if tokenizer is not None:
            tokenizer.save(tmp)
        buf = io.BytesIO()
        torch.save(optimizer_payload, buf)
        write_bytes(tmp / OPTIMIZER, buf.getvalue())
        # Checksums of every file (the weights' is in lmforge.json already).
        sums = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())
                if f.is_file() and f.name != WEIGHTS}
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, **trainer_state,
                 "sha256": sums}
        write_json(tmp / STATE, state)
    return path


def load_optimizer_payload(path: str | Path) -> dict:
    f = Path(path) / OPTIMIZER
    try:
        payload = torch_load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is incomplete: {OPTIMIZER} is missing") \
            from None
    except LmforgeError:  # no key, a wrong key, a damaged encrypted file: already one line
        raise
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{f} is corrupt or truncated: {torch_load_error(e)}") from None
    if not isinstance(payload, dict) or "optimizer" not in payload:
        raise CheckpointError(f"{f} is corrupt: no optimizer state")
    return payload


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    verify: bool = True) -> tuple[dict, dict]:
    """Verify a checkpoint, then load its weights into ``model`` (and the AdamW state into
    ``optimizer``). Returns ``(trainer_state, optimizer_payload)``. ``verify=False`` skips
    the checksums when :func:`verify_checkpoint` has just run."""
    path = Path(path)
    state = verify_checkpoint(path, model) if verify else read_trainer_state(path)
    payload = load_optimizer_payload(path)
    load_state_checked(model, path)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"{path / OPTIMIZER} does not match this model's "
                                  f"optimizer: {msg}") from None
    return state, payload


def check_run_key(run_dir: str | Path, distributed: str, resume: bool) -> None:
    """What a run with encryption needs, checked before it writes anything.

    With an active key the run must be single-process (``distributed="none"``): the
    sharded checkpoints of the distributed strategies are not encrypted. On resume the
    latest checkpoint must open with the active key, or need none: a missing or wrong key
    raises :class:`ConfigError` here, so the run folder is left as it was."""
    if active_key() is not None and distributed != "none":
        raise ConfigError(f"encrypted checkpoints are written by single-process runs; "
                          f"train.distributed={distributed} writes sharded checkpoints, "
                          "which are not encrypted")
    latest = latest_checkpoint(run_dir) if resume else None
    if latest is not None and (latest / STATE).is_file():
        check_key(latest / STATE)


# ----------------------------------------------------------------------------- housekeeping

def _remove_dir(p: Path) -> None:
    """Delete a folder so that a kill midway never leaves a half folder named step_*."""
    doomed = p.with_name(f".{p.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    p.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def prune_checkpoints(run_dir: str | Path, keep_last: int,
                      keep: set[Path] | frozenset[Path] = frozenset()) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and those in ``keep``."""
    ckpts = list_checkpoints(run_dir)
    protect = set(ckpts[-keep_last:]) | {Path(p) for p in keep}
    removed = []
    for p in ckpts:
        if p not in protect:
            _remove_dir(p)
            removed.append(p)
    if removed:
        fsync_dir(Path(run_dir) / CHECKPOINTS)
    return removed


def clean_stale(run_dir: str | Path) -> None:
    """Remove hidden leftovers of a killed run (staging and half-deleted folders)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(".step_") and p.is_dir() and (
                p.name.endswith((".tmp", ".deleting"))):
            shutil.rmtree(p, ignore_errors=True)
