"""DQN against stable-baselines3 on the same hyper-parameters, one torch thread each.

Both implementations train with rl-zoo's hyper-parameters (lmforge's built-in recipes
``dqn-cartpole`` and ``dqn-acrobot`` hold the same numbers) on CartPole-v1 with seeds 0, 1, 2
and on Acrobot-v1 with seed 0. Each run is its own process with ``OMP_NUM_THREADS=1``.

During training both are evaluated every 2,500 transitions (Acrobot: 5,000) on 10
deterministic (greedy) episodes by the same code (:func:`lmforge.rl.evaluate.run_episodes`
from the same seed); the evaluation time is subtracted from the wall time. Both keep the
best evaluated network as the policy by the same rule (:mod:`lmforge.rl.best`; for SB3 what
its ``EvalCallback`` does with ``best_model_save_path``). Reported per run: the training
wall time, the first transition count whose evaluation reached the threshold (CartPole 475,
Acrobot −100), and the mean return over 20 greedy episodes from other starts
(``eval.final_seed``) of the kept policy and of the last network.

Bar (issue 17): lmforge reaches 500 on CartPole on 3/3 seeds in wall time ≤ SB3's.

Run ``python bench/dqn.py`` (about 12 minutes on 2 cores; ``--envs cartpole`` for CartPole
only, ``--seeds 0 1`` for fewer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line

ENVS = {
    "cartpole": {"id": "CartPole-v1", "recipe": "dqn-cartpole", "every": 2500,
                 "threshold": 475.0, "seeds": (0, 1, 2)},
    "acrobot": {"id": "Acrobot-v1", "recipe": "dqn-acrobot", "every": 5000,
                "threshold": -100.0, "seeds": (0,)},
}
EVAL_EPISODES, FINAL_EPISODES, EVAL_SEED, FINAL_SEED = 10, 20, 10_000, 20_000


def sb3_run(env: dict, seed: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from lmforge.rl.best import BestPolicy
    from lmforge.rl.evaluate import run_episodes, summarize
    from lmforge.rl.recipe import build_dqn_recipe, load_rl_raw

    recipe = build_dqn_recipe(load_rl_raw(env["recipe"], []))
    c, hidden = recipe.dqn, recipe.network.hidden
    model = DQN("MlpPolicy", gym.make(env["id"]), learning_rate=c.lr, batch_size=c.batch_size,
                buffer_size=c.buffer_size, learning_starts=c.learning_starts, gamma=c.gamma,
                train_freq=c.train_freq, gradient_steps=c.gradient_steps,
                target_update_interval=c.target_update_interval,
                exploration_fraction=c.exploration_fraction,
                exploration_final_eps=c.exploration_final_eps,
                policy_kwargs={"net_arch": list(hidden)}, seed=seed, verbose=0, device="cpu")

    def policy(obs):
        return int(model.predict(obs, deterministic=True)[0])

    def evaluate(episodes: int, seed: int) -> float:
        return summarize(run_episodes(policy, env["id"], episodes, seed))["return_mean"]

    best = BestPolicy()

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.evals, self.seconds = [], 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % env["every"] == 0 and self.num_timesteps < c.total_steps:
                t0 = time.perf_counter()
                score = evaluate(EVAL_EPISODES, EVAL_SEED)
                self.evals.append((self.num_timesteps, score))
                best.offer(self.num_timesteps, score, model.q_net)
                self.seconds += time.perf_counter() - t0
            return True

    cb = Evaluate()
    t0 = time.perf_counter()
    model.learn(total_timesteps=c.total_steps, callback=cb)
    wall = time.perf_counter() - t0 - cb.seconds
    last = evaluate(FINAL_EPISODES, FINAL_SEED)
    if best.score is not None and evaluate(EVAL_EPISODES, EVAL_SEED) < best.score:
        model.q_net.load_state_dict(best.weights)
    return {"wall_s": wall, "evals": cb.evals, "final": evaluate(FINAL_EPISODES, FINAL_SEED),
            "last": last}


def lmforge_run(env: dict, seed: int) -> dict:
    from lmforge.rl.recipe import build_dqn_recipe, load_rl_raw
    from lmforge.rl.train import train_dqn
    from lmforge.train.metrics_log import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        recipe = build_dqn_recipe(load_rl_raw(env["recipe"], [
            f"run.seed={seed}", f"eval.every={env['every']}",
            f"eval.during_episodes={EVAL_EPISODES}", f"eval.episodes={FINAL_EPISODES}",
            f"eval.seed={EVAL_SEED}", f"eval.final_seed={FINAL_SEED}", "eval.keep_best=true",
            "log.ckpt_every=0", "log.progress=false"]))
        result = train_dqn(recipe, out=Path(tmp) / "run", log=lambda _m: None)
        evals = [(r["step"], r["eval_return_mean"])
                 for r in read_metrics(Path(tmp) / "run" / "metrics.jsonl")
                 if "eval_return_mean" in r]
    return {"wall_s": result["train_seconds"], "evals": evals,
            "final": result["eval"]["return_mean"],
            "last": result.get("eval_last", result["eval"])["return_mean"]}


def one(impl: str, env_name: str, seed: int) -> None:
    run = sb3_run if impl == "sb3" else lmforge_run
    print(json.dumps(run(ENVS[env_name], seed)))


def spawn(impl: str, env_name: str, seed: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--one", impl, env_name, str(seed)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def reached(evals: list, threshold: float) -> int | None:
    return next((step for step, ret in evals if ret >= threshold), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=3, metavar=("IMPL", "ENV", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="seeds for CartPole (default 0 1 2)")
    args = ap.parse_args()
    if args.one:
        one(args.one[0], args.one[1], int(args.one[2]))
        return
    print(machine_line())
    print(f"{'env':<12}{'seed':>5} {'impl':<8}{'wall s':>8}{'steps to thr':>14}"
          f"{'kept policy':>13}{'last network':>14}")
    rows = []
    for name in args.envs:
        env = ENVS[name]
        seeds = args.seeds if (args.seeds and name == "cartpole") else env["seeds"]
        for seed in seeds:
            res = {impl: spawn(impl, name, seed) for impl in ("sb3", "lmforge")}
            for impl, r in res.items():
                r["reached"] = reached(r["evals"], env["threshold"])
                print(f"{env['id']:<12}{seed:>5} {impl:<8}{r['wall_s']:>8.1f}"
                      f"{str(r['reached']):>14}{r['final']:>13.1f}{r['last']:>14.1f}",
                      flush=True)
            rows.append((name, seed, res))
    for name, seed, res in rows:
        env = ENVS[name]
        lm, sb = res["lmforge"], res["sb3"]
        ratio = sb["wall_s"] / lm["wall_s"]
        emit({"bench": "dqn", "metric": f"wall_s_{name}_seed{seed}", "lmforge": lm["wall_s"],
              "peer": sb["wall_s"], "peer_name": "stable-baselines3", "ratio": ratio,
              "target": 1.0, "met": ratio >= 1.0 if name == "cartpole" else None})
        target = 500.0 if name == "cartpole" else None
        emit({"bench": "dqn", "metric": f"final_return_{name}_seed{seed}",
              "lmforge": lm["final"], "peer": sb["final"], "peer_name": "stable-baselines3",
              "ratio": None, "target": target,
              "met": (lm["final"] >= 500.0) if target else None})
        emit({"bench": "dqn", "metric": f"last_network_return_{name}_seed{seed}",
              "lmforge": lm["last"], "peer": sb["last"], "peer_name": "stable-baselines3",
              "ratio": None, "target": None, "met": None})
        emit({"bench": "dqn", "metric": f"steps_to_{env['threshold']:g}_{name}_seed{seed}",
              "lmforge": lm["reached"], "peer": sb["reached"],
              "peer_name": "stable-baselines3", "ratio": None, "target": None, "met": None})


if __name__ == "__main__":
    main()
