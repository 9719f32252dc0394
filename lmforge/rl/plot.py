"""``returns.png``: episode returns (and their moving average) and evaluation returns
against environment transitions, drawn from ``metrics.jsonl``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes


def plot_returns(records: list[dict], path: str | Path, title: str, window: int = 20) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    episodes = [(r["step"], r["episode_return"]) for r in records if "episode_return" in r]
    evals = [(r["step"], r["eval_return_mean"], r.get("eval_return_std", 0.0))
             for r in records if "eval_return_mean" in r]
    if not episodes and not evals:
        return False
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return True
