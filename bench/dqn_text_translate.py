"""DQN for translation: the reference model, soft Double DQN and REINFORCE (same budget).

Both learners start from the en -> de translation Transformer
(``runs/translate-transformer-en-de``: run ``lmforge finetune translate-transformer-en-de``
first) and train on the sentence-BLEU reward of training pairs with the same KL
coefficient β, the same number of sampled episodes (``rounds × episodes_per_round``) and
one torch thread, via the built-in recipes ``dqn-text-translate`` and
``reinforce-text-translate``; ``--top-k K`` adds a DQN run on the reference's top-K
actions. Every figure comes from ``results.json`` of each run
(:meth:`lmforge.rl.text.translation.TranslationTask.evaluate`) on the held-out split of
the recipes (``test_unseen``): sacrebleu corpus BLEU and chrF of greedy output and of one
temperature-1 sample per source, and KL(π‖π_ref) per sentence.

Prints a table, then one JSON object per figure (``lmforge``: DQN, ``peer``: REINFORCE).
Run ``python bench/dqn_text_translate.py`` (``--rounds``, ``--set`` and ``--work`` change
the budget, the recipes and the folder).
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
FIGURES = ("greedy_bleu", "greedy_chrf", "sample_bleu", "sample_chrf", "reward", "kl",
           "length")


def run(name: str, work: Path, overrides: list[str], out: str | None = None) -> dict:
    raw = apply_overrides(load_yaml(RECIPES / f"{name}.yaml"), overrides)
    t0 = time.perf_counter()
    res = train_text_rl(build_text_recipe(raw), work / (out or name), log=lambda m: None)
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="override both recipes' rounds")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override a field of both recipes")
    ap.add_argument("--top-k", type=int, default=None,
                    help="add a DQN run with top_k_actions=K")
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dqn-text-translate-"))
    overrides = list(args.overrides) + ([f"rounds={args.rounds}"] if args.rounds else [])
    cols = {"soft DQN": run("dqn-text-translate", work, overrides),
            "REINFORCE": run("reinforce-text-translate", work, overrides)}
    if args.top_k:
        cols[f"DQN top-{args.top_k}"] = run("dqn-text-translate", work,
                                            overrides + [f"top_k_actions={args.top_k}"],
                                            f"dqn-text-translate-top{args.top_k}")
    dqn, rf = cols["soft DQN"], cols["REINFORCE"]
    ref = dqn["before"]
    figures = {"reference": ref, **{c: r["after"] for c, r in cols.items()}}
    if args.top_k:  # the reference's own samples on its top-k sets
        figures = {f"reference top-{args.top_k}": cols[f"DQN top-{args.top_k}"]["before"],
                   **figures}
    print(machine_line())
    print(f"budget: {dqn['episodes']} episodes each; {ref['n']} pairs of {ref['split']}; "
          f"runs in {work}")
    print(f"{'figure':<16}" + "".join(f"{c:>16}" for c in figures))
    for f in FIGURES:
        print(f"{f:<16}" + "".join(f"{r[f]:>16.3f}" for r in figures.values()))
    secs = [f"{cols[c]['train_seconds']:>16.0f}" if c in cols else f"{'':>16}"
            for c in figures]
    print(f"{'train seconds':<16}" + "".join(secs))
    for f in FIGURES + ("train_seconds",):
        a, b = dqn["after"].get(f, dqn.get(f)), rf["after"].get(f, rf.get(f))
        emit({"bench": "dqn_text_translate", "metric": f, "lmforge": a, "peer": b,
              "peer_name": "reinforce", "reference": ref.get(f),
              "ratio": a / b if b else None, "target": None, "met": None})


if __name__ == "__main__":
    main()
