"""What the target network's sync period does: CartPole-v1 with one update per transition
and the target synced every transition (the source documents' pseudocode: the target is
the online network at every update) against every 500 transitions.

Everything else is equal: 30,000 transitions, an update per transition (batch 64, Adam
1e-3, Huber, gradient clip 10), ε from 1 to 0.04 over the first 20%, a [256, 256] network,
seeds 0, 1, 2; every 2,500 transitions 10 greedy episodes. Reported per seed: the
evaluation returns, the final one (20 episodes), and the mean |Q| of the last updates
(the Bellman fixed point for a policy that balances forever is 1 / (1 − γ) = 100).

Run ``python bench/dqn_target_sync.py`` (about 4 minutes on one core).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import emit, machine_line

SETS = ["dqn.total_steps=30000", "dqn.learning_starts=1000", "dqn.train_freq=1",
        "dqn.gradient_steps=1", "dqn.batch_size=64", "dqn.lr=1e-3",
        "dqn.exploration_fraction=0.2", "eval.every=2500", "eval.during_episodes=10",
        "log.ckpt_every=0", "log.progress=false"]
PERIODS = (1, 500)


def run(period: int, seed: int) -> dict:
    from lmforge.rl.recipe import build_dqn_recipe, load_rl_raw
    from lmforge.rl.train import train_dqn
    from lmforge.train.metrics_log import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        recipe = build_dqn_recipe(load_rl_raw("dqn-cartpole", [
            *SETS, f"dqn.target_update_interval={period}", f"run.seed={seed}"]))
        result = train_dqn(recipe, Path(tmp) / "run", log=lambda _m: None)
        records = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    evals = [r["eval_return_mean"] for r in records if "eval_return_mean" in r]
    q = [r["q_mean"] for r in records if "q_mean" in r]
    return {"evals": evals, "final": result["eval"]["return_mean"], "q_last": q[-1]}


def main() -> None:
    torch.set_num_threads(1)
    print(machine_line())
    print(f"{'sync every':>10} {'seed':>4}  {'final':>6} {'mean Q':>7}  evaluations every 2,500")
    for seed in (0, 1, 2):
        res = {p: run(p, seed) for p in PERIODS}
        for p, r in res.items():
            print(f"{p:>10} {seed:>4}  {r['final']:>6.1f} {r['q_last']:>7.1f}  "
                  + " ".join(f"{e:.0f}" for e in r["evals"]), flush=True)
        emit({"bench": "dqn_target_sync", "metric": f"final_return_seed{seed}",
              "lmforge": res[500]["final"], "peer": res[1]["final"],
              "peer_name": "target synced every transition", "ratio": None, "target": None,
              "met": None})


if __name__ == "__main__":
    main()
