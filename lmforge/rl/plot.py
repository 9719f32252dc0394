"""``returns.png``: episode returns (and their moving average) and evaluation returns
against environment transitions, drawn from ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..train.plots import new_figure, save_figure


def plot_returns(records: list[dict], path: str | Path, title: str, window: int = 20) -> bool:
    episodes = [(r["step"], r["episode_return"]) for r in records if "episode_return" in r]
    evals = [(r["step"], r["eval_return_mean"], r.get("eval_return_std", 0.0))
             for r in records if "eval_return_mean" in r]
    if not episodes and not evals:
        return False
    fig, ax = new_figure()
    if episodes:
        x, y = (np.array(v) for v in zip(*episodes, strict=True))
        ax.plot(x, y, linewidth=0.6, alpha=0.35, label="episode return")
        if len(y) >= window:
            avg = np.convolve(y, np.ones(window) / window, mode="valid")
            ax.plot(x[window - 1:], avg, linewidth=1.4, label=f"mean of last {window}")
    if evals:
        x, m, s = (np.array(v) for v in zip(*evals, strict=True))
        ax.errorbar(x, m, yerr=s, fmt="o-", markersize=3, capsize=2,
                    label="evaluation (greedy)")
    ax.set_xlabel("environment transitions")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True
