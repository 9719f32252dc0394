"""The loss-curve picture of a run (``loss.png``), drawn from ``metrics.jsonl`` records,
and :func:`save_figure`, the writer of every PNG that a command with a key can reach.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display needed) and writes
the PNG atomically, so a reader never sees half a picture.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..privacy.encrypted_io import write_bytes


def new_figure(size: tuple[float, float] = (7, 4.2)):
    """``(figure, axes)``: one plot on an Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def save_figure(fig, path: str | Path, dpi: float | None = None) -> None:
    """Write ``fig`` as a PNG of ``dpi`` dots per inch (default: the figure's), laid out
    tight first unless it has a layout engine of its own (``layout="constrained"``). The
    PNG is rendered into memory and written by
    :func:`lmforge.privacy.encrypted_io.write_bytes`: atomically, and encrypted when a key
    is active (``--key-file`` and the like), so no plaintext picture reaches the disk."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi="figure" if dpi is None else dpi)
    write_bytes(path, buf.getvalue())


def plot_loss(records: list[dict], path: str | Path, title: str | None = None,
              log_y: bool = True) -> bool:
    """Train loss and val loss against step. Returns False when there is nothing to plot."""
    train = [(r["step"], r["loss"]) for r in records
             if isinstance(r.get("loss"), (int, float)) and "step" in r]
    val = [(r["step"], r["val_loss"]) for r in records
           if isinstance(r.get("val_loss"), (int, float)) and "step" in r]
    if not train and not val:
        return False
    fig, ax = new_figure()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.0, alpha=0.85)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss", linewidth=1.5, markersize=3)
    values = [v for _, v in train + val]
    if log_y and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title or "loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True
