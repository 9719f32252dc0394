"""DQN for text generation: the reference GPT, soft Double DQN and REINFORCE (same budget).

Both learners start from the quickstart GPT (``runs/quickstart``: run ``make quickstart``
first) and train on the world-grammar reward with the same KL coefficient β, the same
number of sampled episodes (``rounds × episodes_per_round``) and one torch thread, via the
built-in recipes ``dqn-text-world`` and ``reinforce-text-world``. Every figure comes from
``results.json`` of each run (:func:`lmforge.rl.text.metrics.evaluate_policy`): sampling at
temperature 1.0 without top-k/top-p, 500 samples.

Bar (issue 17): DQN raises the grammatical rate by at least half of the reference's gap to
100%, with distinct-2 within 10% of the reference's. Prints a table, then one JSON object
per figure (``lmforge``: DQN, ``peer``: REINFORCE) with the machine tag.

Run ``python bench/dqn_text.py`` (``--rounds`` and ``--work`` change the budget and the
folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import emit, machine_line

from lmforge.config import apply_overrides, load_yaml
from lmforge.rl.text import build_text_recipe, train_text_rl

RECIPES = Path(__file__).resolve().parent.parent / "lmforge" / "configs" / "rl"
FIGURES = ("grammatical", "kl", "distinct_1", "distinct_2", "sample_bits", "sample_true_bits",
           "heldout_bits", "true_bits")


def run(name: str, work: Path, overrides: list[str]) -> dict:
    raw = apply_overrides(load_yaml(RECIPES / f"{name}.yaml"), overrides)
    t0 = time.perf_counter()
    res = train_text_rl(build_text_recipe(raw), work / name, log=lambda m: None)
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="override both recipes' rounds")
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dqn-text-"))
    overrides = [f"rounds={args.rounds}"] if args.rounds else []
    dqn = run("dqn-text-world", work, overrides)
    rf = run("reinforce-text-world", work, overrides)
    ref = dqn["before"]
    print(machine_line())
    print(f"budget: {dqn['episodes']} episodes each; runs in {work}")
    print(f"{'figure':<18}{'reference':>12}{'soft DQN':>12}{'REINFORCE':>12}")
    for f in FIGURES:
        print(f"{f:<18}{ref[f]:>12.3f}{dqn['after'][f]:>12.3f}{rf['after'][f]:>12.3f}")
    print(f"{'train seconds':<18}{'':>12}{dqn['train_seconds']:>12.0f}"
          f"{rf['train_seconds']:>12.0f}")
    goal = ref["grammatical"] + (1 - ref["grammatical"]) / 2
    met_g = dqn["after"]["grammatical"] >= goal
    div = dqn["after"]["distinct_2"] / ref["distinct_2"]
    emit({"bench": "dqn_text", "metric": "grammatical_t1", "lmforge": dqn["after"]["grammatical"],
          "peer": rf["after"]["grammatical"], "peer_name": "reinforce", "reference":
          ref["grammatical"], "ratio": dqn["after"]["grammatical"] / max(
              rf["after"]["grammatical"], 1e-9), "target": goal, "met": met_g})
    emit({"bench": "dqn_text", "metric": "distinct_2_vs_reference", "lmforge": div,
          "peer": rf["after"]["distinct_2"] / ref["distinct_2"], "peer_name": "reinforce",
          "ratio": None, "target": 0.9, "met": div >= 0.9})
    for f in ("kl", "sample_bits", "heldout_bits", "train_seconds"):
        a = dqn["after"].get(f, dqn.get(f))
        b = rf["after"].get(f, rf.get(f))
        emit({"bench": "dqn_text", "metric": f, "lmforge": a, "peer": b,
              "peer_name": "reinforce", "ratio": a / b if b else None, "target": None,
              "met": None})


if __name__ == "__main__":
    main()
