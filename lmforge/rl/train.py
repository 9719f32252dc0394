"""``lmforge rl train`` for ``algo: dqn``: the interaction loop, logging and checkpoints.

Each iteration steps every environment once with ε-greedy actions and stores the
transitions; every ``train_freq`` iterations (after ``learning_starts`` transitions) the
learner takes ``gradient_steps`` updates; the target network moves whenever the transition
count passes a multiple of ``target_update_interval``. These are stable-baselines3's
counting conventions, so its hyper-parameters carry over unchanged.

A run folder holds ``config.yaml`` (the resolved recipe), ``metrics.jsonl`` (one line per
finished episode, per ``log.every`` transitions and per evaluation), ``returns.png``,
``checkpoints/`` and, at the end, ``policy/`` and ``results.json`` (the final deterministic
evaluation). With ``eval.keep_best`` the policy is the best network of the evaluations
during training (:mod:`lmforge.rl.best`); ``results.json`` then also reports the last one. ``--resume`` restores everything, environments included, and continues with
exactly the transitions, updates and metric lines of an uninterrupted run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text, ensure_writable_dir
from ..train.checkpoint import latest_checkpoint, prune_checkpoints
from ..train.metrics_log import MetricsLog, read_metrics, truncate_after
from .best import BestPolicy
from .checkpoint import POLICY, load_rl_checkpoint, save_policy, save_rl_checkpoint, start_run
from .dqn import DQN
from .envs import EnvPool, obs_dim
from .evaluate import greedy, run_episodes, summarize
from .networks import QNetworkConfig
from .plot import plot_returns
from .recipe import DQNRecipe

_SAME_ON_RESUME = ("algo", "env", "network", "dqn")


def _crossed(before: int, after: int, every: int) -> bool:
    return every > 0 and after // every > before // every


def _start(run: Path, recipe: DQNRecipe, resume: bool) -> tuple[dict, dict] | None:
    """``(meta, state)`` of the checkpoint to resume (the same recipe), or None."""
    ckpt = start_run(run, resume)
    if ckpt is None:
        return None
    meta, state = load_rl_checkpoint(ckpt)
    now = recipe.model_dump(mode="json")
    for section in _SAME_ON_RESUME:
        if meta["recipe"].get(section) != now.get(section):
            raise ConfigError(f"--resume: the {section} section differs from the run's "
                              "checkpoint; resume with the same recipe")
    return meta, state


def train_dqn(recipe: DQNRecipe, out: Path | None = None, resume: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Train, evaluate and save a DQN policy; returns the final evaluation."""
    cfg, c = recipe, recipe.dqn
    run = ensure_writable_dir(Path(out) if out is not None else recipe.run.path)
    restored = _start(run, recipe, resume)
    if c.threads is not None:
        torch.set_num_threads(c.threads)
    pool = EnvPool(cfg.env.id, cfg.env.num_envs, cfg.run.seed, cfg.env.kwargs)
    net = QNetworkConfig(obs_dim(pool.envs[0]), pool.n_actions, list(cfg.network.hidden),
                         cfg.network.dueling)
    agent = DQN(c, net, pool.n, cfg.run.seed)
    t, calls, episodes = 0, 0, 0
    recent: deque[float] = deque(maxlen=100)
    round_stats: dict = {}
    best = BestPolicy()
    if restored is None:
        pool.reset()
        atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"),
                                                              sort_keys=False))
    else:
        meta, state = restored
        agent.load_state_dict(state["agent"])
        pool.load_state_dict(state["envs"])
        t, calls, episodes = int(state["t"]), int(state["calls"]), int(state["episodes"])
        recent.extend(state["recent"])
        round_stats = dict(state["round_stats"])
        best.load_state_dict(state.get("best"))
        truncate_after(run / "metrics.jsonl", t)
        log(f"resumed {run} at transition {t}")
    metrics = MetricsLog(run / "metrics.jsonl", fresh=restored is None)
    env_info = {"id": cfg.env.id, "kwargs": cfg.env.kwargs}

    def checkpoint() -> None:
        metrics.sync()
        state = {"agent": agent.state_dict(), "envs": pool.state_dict(), "t": t,
                 "calls": calls, "episodes": episodes, "recent": list(recent),
                 "round_stats": round_stats, "network": net.to_dict(),
                 "best": best.state_dict()}
        save_rl_checkpoint(run, t, state, cfg.model_dump(mode="json"))
        prune_checkpoints(run, cfg.log.keep_last)

    from tqdm.auto import tqdm

    bar = tqdm(total=c.total_steps, initial=t, unit="step", disable=not cfg.log.progress,
               dynamic_ncols=True, desc=cfg.env.id)
    started, eval_seconds = time.perf_counter(), 0.0

    def selection_eval(q) -> dict:
        return summarize(run_episodes(greedy(q), cfg.env.id, cfg.eval.during_episodes,
                                      cfg.eval.seed, cfg.env.kwargs))

    def final_eval(q) -> dict:
        return summarize(run_episodes(greedy(q), cfg.env.id, cfg.eval.episodes,
                                      cfg.eval.final_seed, cfg.env.kwargs))

    flush_denormal = torch.set_flush_denormal(True)
    try:
        while t < c.total_steps:
            obs = pool.obs.copy()
            actions = agent.act(obs, t)
            next_obs, reward, term, trunc, finished = pool.step(actions)
            agent.observe(obs, actions, reward, next_obs, term, trunc)
            before, t, calls = t, t + pool.n, calls + 1
            for ret, length in finished:
                episodes += 1
                recent.append(ret)
                metrics.write({"step": t, "episode": episodes, "episode_return": ret,
                               "episode_length": length})
            if _crossed(before, t, c.target_update_interval):
                agent.update_target()
            if calls % c.train_freq == 0 and t > c.learning_starts:
                n_updates = c.gradient_steps if c.gradient_steps >= 0 else c.train_freq * pool.n
                if n_updates > 0:
                    round_stats = agent.train_round(n_updates, t / c.total_steps)
            bar.update(t - before)
            if _crossed(before, t, cfg.log.every):
                mean = float(np.mean(recent)) if recent else None
                metrics.write({"step": t, "episodes": episodes, "ep_return_mean": mean,
                               "eps": agent.epsilon(t), "updates": agent.updates,
                               **round_stats, "time": time.perf_counter() - started})
                if mean is not None:
                    bar.set_postfix(ret=f"{mean:.1f}", eps=f"{agent.epsilon(t):.2f}")
            if _crossed(before, t, cfg.eval.every) and t < c.total_steps:
                eval_started = time.perf_counter()
                ev = selection_eval(agent.q)
                metrics.write({"step": t, "eval_return_mean": ev["return_mean"],
                               "eval_return_std": ev["return_std"]})
                if cfg.eval.keep_best:
                    best.offer(t, ev["return_mean"], agent.q)
                eval_seconds += time.perf_counter() - eval_started
            if _crossed(before, t, cfg.log.ckpt_every) and t < c.total_steps:
                checkpoint()
        train_seconds = time.perf_counter() - started - eval_seconds
        last = latest_checkpoint(run)
        if last is None or last.name != f"step_{t:07d}":
            checkpoint()
    finally:
        if flush_denormal:
            torch.set_flush_denormal(False)
        bar.close()
        metrics.close()
        pool.close()
    policy, policy_step, extra = agent.q, t, {}
    if cfg.eval.keep_best and best.score is not None:
        last_score = selection_eval(agent.q)["return_mean"]
        if last_score < best.score:
            policy, policy_step = best.network(agent.q), best.step
        extra = {"eval_last": final_eval(agent.q), "selection": {
            "best_step": best.step, "best_score": best.score, "last_score": last_score}}
    final = final_eval(policy)
    save_policy(run / POLICY, policy, env_info)
    records = read_metrics(run / "metrics.jsonl")
    plot_returns(records, run / "returns.png", f"DQN on {cfg.env.id}")
    result = {"env": cfg.env.id, "transitions": t, "episodes": episodes,
              "updates": agent.updates, "policy_step": policy_step, "eval": final, **extra,
              "train_seconds": train_seconds, "eval_seconds": eval_seconds}
    atomic_write_json(run / "results.json", result)
    kept = f" (the network of transition {policy_step})" if policy_step != t else ""
    log(f"{cfg.env.id}: {t} transitions, {episodes} episodes; greedy return over "
        f"{final['episodes']} episodes {final['return_mean']:.1f} ± {final['return_std']:.1f}"
        f"{kept} -> {run}")
    return result

