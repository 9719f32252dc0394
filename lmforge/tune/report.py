"""What ``lmforge tune`` leaves in its output folder once the study holds its trials::

    <out>/
      trial_0000/ ...        one run folder per trial (written by the trials)
      trials.csv             every trial: number, state, value, last evaluated step,
                             seconds, parameters, run folder, worker (host:pid),
                             error (of a failed trial)
      best.json              the best trial: number, value, parameters, run folder
      best.yaml              the base recipe with the best parameters: a ready recipe
      plots/optimization_history.png    value per trial and the best so far
      plots/param_importances.png       share of the value's variation each parameter
                                        explains (optuna's default evaluator)
      plots/parallel_coordinates.png    each trial as a line through its parameters
      plots/intermediate_values.png     the metric at each evaluation, per trial (the
                                        curves pruning compared)

The same table is printed. Every file is written atomically. The best trial is the best
COMPLETE one (a pruned trial's value is that of the evaluation it stopped at, not a
finished run's). The plots are optuna's matplotlib visualisations on the Agg canvas; a
plot with too few trials for it is drawn empty, one that optuna refuses is left out with
a note.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable
from typing import Any

from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text

PLOTS = {"optimization_history": "plot_optimization_history",
         "param_importances": "plot_param_importances",
         "parallel_coordinates": "plot_parallel_coordinate",
         "intermediate_values": "plot_intermediate_values"}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trial_rows(study: Any, params: list[str]) -> list[dict[str, Any]]:
    """One row per trial, in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     "steps": t.user_attrs.get("steps"), "seconds": t.user_attrs.get("seconds"),
                     **{p: t.params.get(p) for p in params},
                     "run_dir": t.user_attrs.get("run_dir", ""),
                     "worker": t.user_attrs.get("worker", ""),
                     "error": t.user_attrs.get("error", "")})
    return rows


def format_table(rows: list[dict[str, Any]], metric: str, best: int | None) -> list[str]:
    """The rows as aligned text lines; the best trial is marked with ``*``."""
    if not rows:
        return ["(no trials)"]
    cols = [c for c in rows[0] if c not in ("run_dir", "worker", "error")]
    head = {c: metric if c == "value" else c for c in cols}
    cells = [[_cell(r[c]) + ("*" if c == "trial" and r["trial"] == best else "")
              for c in cols] for r in rows]
    widths = [max(len(head[c]), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(head[c].rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return lines


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_plots(study: Any, folder: Any, log: Callable[[str], None]) -> list[str]:
    """optuna's matplotlib plots of ``study`` as PNGs in ``folder``; the names written."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the figures go to files
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    complete = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    for name, fn in PLOTS.items():
        if name == "param_importances" and complete < 2:
            # an importance is a share of the variance between trials (fANOVA): one
            # trial has none, and drawing the meaningless bars took a second
            log(f"plots: {name} left out (it needs 2 completed trials, the study has "
                f"{complete})")
            continue
        # optuna sets its ggplot style globally: rc_context puts matplotlib's back after
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = getattr(vis, fn)(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                log(f"plots: {name} left out ({str(e).splitlines()[0]})")
                continue
            fig = (ax if hasattr(ax, "figure") else ax.flat[0]).figure
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
        atomic_write_bytes(folder / f"{name}.png", buf.getvalue())
        written.append(name)
    return written


def write_report(study: Any, s: Any, log: Callable[[str], None] = print) -> dict:
    """Write trials.csv, best.json, best.yaml and the plots of a study run with settings
    ``s`` (:class:`~lmforge.tune.study.TuneSettings`); print the table; returns the
    summary that best.json holds (``best`` None while no trial completed)."""
    rows = trial_rows(study, s.space.names)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    atomic_write_text(s.out / "trials.csv", _csv_text(rows))
    for line in format_table(rows, s.metric, best.number if best else None):
        log(line)
    states = {state: sum(r["state"] == state for r in rows)
              for state in ("complete", "pruned", "fail", "running", "waiting")}
    summary: dict[str, Any] = {"study": s.study, "metric": s.metric,
                               "direction": s.direction, "trials": states, "best": None}
    if best is not None:
        recipe = s.recipe.load(best.params)
        header = (f"# lmforge tune: study {s.study}, trial {best.number}: {s.metric} "
                  f"{best.value:.6g} ({s.direction}), the best of {len(complete)} complete "
                  "trials\n")
        atomic_write_text(s.out / "best.yaml", header + recipe.to_yaml())
        summary["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                           "run_dir": best.user_attrs.get("run_dir"),
                           "recipe": str(s.out / "best.yaml")}
        log(f"best: trial {best.number}, {s.metric} {best.value:.4g}; recipe "
            f"{s.out / 'best.yaml'}")
    else:
        log("best: no trial completed yet")
    atomic_write_json(s.out / "best.json", summary)
    plots = write_plots(study, s.out / "plots", log)
    log(f"wrote {s.out}/trials.csv, best.json{', best.yaml' if best else ''} and "
        f"{len(plots)} plots in {s.out / 'plots'}")
    return summary
