"""Files of a DQN run: checkpoints for exact ``--resume`` and the saved policy.

::

    RUN/checkpoints/step_0010000/
        state.pt        # networks, Adam, replay buffer, n-step queues, RNG states, the
                        #   environments' episode starts and actions (tensors and plain
                        #   values only: loaded with torch.load(weights_only=True))
        rl_state.json   # transition count, the recipe, SHA-256 of state.pt (written last)
    RUN/policy/
        config.json     # the Q-network's shape and the environment it acts in
        model.safetensors

Checkpoint folders are staged and renamed atomically (:func:`lmforge.io.atomic_dir`), so a
kill never leaves a half folder under a ``step_*`` name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, LmforgeError
from ..io import atomic_dir, read_json, torch_load_error
from ..models.base import sha256_file
from ..train.checkpoint import checkpoint_path, clean_stale, latest_checkpoint
from .networks import QNetwork, QNetworkConfig

STATE = "state.pt"
META = "rl_state.json"
POLICY = "policy"
FORMAT = "lmforge-rl-dqn"


def start_run(run: Path, resume: bool) -> Path | None:
    """The latest checkpoint of ``run`` to resume from, or None for a new run. A folder
    that already holds a run is never overwritten without ``--resume``; ``--resume``
    without a checkpoint is an error. Leftovers of a killed save are removed first."""
    clean_stale(run)
    ckpt = latest_checkpoint(run)
    if not resume:
        if ckpt is not None or (run / "metrics.jsonl").exists():
            raise LmforgeError(f"{run} already holds a run; pass --resume to continue it or "
                               "--out for a new folder")
        return None
    if ckpt is None:
        raise LmforgeError(f"--resume: {run} has no checkpoint to resume from")
    return ckpt


def save_rl_checkpoint(run: Path, step: int, state: dict, recipe: dict) -> Path:
    path = checkpoint_path(run, step)
    with atomic_dir(path) as tmp:
        torch.save(state, tmp / STATE)
        meta = {"format": FORMAT, "step": step, "recipe": recipe,
                "sha256": {STATE: sha256_file(tmp / STATE)}}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def load_rl_checkpoint(path: Path) -> tuple[dict, dict]:
    """``(meta, state)`` of a checkpoint folder, checksums verified."""
    meta = read_json(path / META)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a DQN checkpoint ({META} has format "
                              f"{meta.get('format')!r})")
    f = path / STATE
    if not f.is_file() or sha256_file(f) != meta.get("sha256", {}).get(STATE):
        raise CheckpointError(f"{f} is missing or damaged (checksum mismatch)")
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise CheckpointError(f"{f}: {torch_load_error(e)}") from None
    return meta, state


def save_policy(path: Path, q: QNetwork, env: dict) -> Path:
    """The greedy policy: the Q-network's weights and what it needs to act."""
    with atomic_dir(path) as tmp:
        save_file({k: v.contiguous() for k, v in q.state_dict().items()},
                  str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(
            {"format": FORMAT, "network": q.config.to_dict(), "env": env}, indent=2) + "\n",
            encoding="utf-8")
    return path


def load_policy(path: str | Path) -> tuple[QNetwork, dict]:
    """``(Q-network, env section)`` from a run folder, its ``policy/`` or a checkpoint."""
    path = Path(path)
    if (path / POLICY).is_dir():
        path = path / POLICY
    if (path / STATE).is_file():
        meta, state = load_rl_checkpoint(path)
        cfg = meta["recipe"]
        q = QNetwork(QNetworkConfig(**state["network"]))
        q.load_state_dict(state["agent"]["q"])
        return q.eval(), cfg["env"]
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} holds no DQN policy (no policy/config.json or "
                              f"checkpoint); train one with lmforge rl train")
    cfg = read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path}/config.json is not a DQN policy")
    q = QNetwork(QNetworkConfig(**cfg["network"]))
    try:
        q.load_state_dict(load_file(str(path / "model.safetensors")))
    except Exception as e:  # noqa: BLE001 - truncated or mismatched weights
        raise CheckpointError(f"{path}/model.safetensors: {e}") from None
    return q.eval(), cfg["env"]
