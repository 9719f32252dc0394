"""Deterministic evaluation: the greedy policy ``a = argmax_a Q(s, a)`` over N episodes.

The evaluation environment is a separate copy seeded once with ``seed`` at its first
reset, so every evaluation of a run sees the same sequence of initial states.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .envs import make_env
from .networks import QNetwork

Policy = Callable[[np.ndarray], int]


def greedy(q: QNetwork) -> Policy:
    """The deterministic policy of a Q-network: one observation in, ``argmax_a Q`` out."""
    def act(obs: np.ndarray) -> int:
        return int(q.act(torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1)))[0])
    return act


def run_episodes(policy: Policy, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict | None = None, render_mode: str | None = None,
                 on_frame=None) -> list[tuple[float, int]]:
    """``(return, length)`` of ``episodes`` episodes of ``policy``; ``on_frame(env)`` is
    called after each reset and step (for rendering)."""
    env = make_env(env_id, render_mode=render_mode, **(env_kwargs or {}))
    out = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed if k == 0 else None)
            if on_frame is not None:
                on_frame(env)
            total, length, done = 0.0, 0, False
            while not done:
                obs, r, term, trunc, _ = env.step(policy(obs))
                total += float(r)
                length += 1
                done = term or trunc
                if on_frame is not None:
                    on_frame(env)
            out.append((total, length))
    finally:
        env.close()
    return out


def summarize(episodes: list[tuple[float, int]]) -> dict:
    returns = np.array([r for r, _ in episodes])
    return {"episodes": len(episodes), "return_mean": float(returns.mean()),
            "return_std": float(returns.std()), "return_min": float(returns.min()),
            "return_max": float(returns.max()),
            "length_mean": float(np.mean([n for _, n in episodes]))}
