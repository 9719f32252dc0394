"""``lmforge tune``: the search space and its errors, a real study of tiny fine-tuning runs
(run folders, the best recipe, the table, the plots, median pruning), a study that
continues with two workers after its worker is killed mid-trial, a queued trial that goes
to exactly one of several SQLite workers, and (slow) two workers on a PostgreSQL server
started from Debian's binaries."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from fakes import assert_user_error, run_cli

optuna = pytest.importorskip("optuna")

from lmforge.errors import ConfigError  # noqa: E402
from lmforge.tune import parse_space  # noqa: E402

# A TextCNN topic classifier small enough that a trial takes two or three seconds.
TINY = {
    "run": {"name": "tiny-topic", "seed": 0},
    "data": {"world": "topic", "langs": ["en"], "max_length": 48,
             "world_sizes": {"train": 400, "val": 100, "test": 50, "test_unseen": 20}},
    "backbone": {"encoder": "textcnn",
                 "encoder_config": {"d_emb": 32, "n_filters": 32, "kernel_sizes": [2, 3]}},
    "head": {"pooling": "max", "dropout": 0.1},
    "finetune": {"metric": "accuracy"},
    "train": {"max_steps": 20, "batch_size": 32, "lr": 2e-3, "min_lr": 0.0,
              "warmup_steps": 2, "eval_every": 10, "ckpt_every": 20, "keep_last": 1,
              "precision": "fp32", "threads": 1},
}
SPACE = {"train.lr": {"loguniform": [1e-4, 3e-2]},
         "head.dropout": {"choice": [0.0, 0.3]},
         "train.batch_size": {"int": [16, 32], "step": 16}}
PLOTS = ("optimization_history", "param_importances", "parallel_coordinates",
         "intermediate_values")


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    recipe, space = tmp_path / "tiny.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    return {"recipe": recipe, "space": space, "db": tmp_path / "tune.db",
            "out": tmp_path / "out"}


def _args(f: dict, study: str, *extra: str) -> list[str]:
    return ["tune", str(f["recipe"]), "--space", str(f["space"]), "--study", study,
            "--storage", f"sqlite:///{f['db']}", "--out", str(f["out"]), *extra]


def _states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ----------------------------------------------------------------------------- space

def test_space_parses_every_distribution_and_draws_inside_it():
    space = parse_space(yaml.safe_load("""
        train.lr: {loguniform: [1e-4, 1e-2]}
        head.dropout: {uniform: [0.0, 0.5]}
        model.n_layer: {choice: [2, 4, 6]}
        finetune.lora.r: {int: [4, 32], step: 4}
        train.batch_size: {int: [8, 64], log: true}
    """))
    assert space.names == ["train.lr", "head.dropout", "model.n_layer", "finetune.lora.r",
                           "train.batch_size"]
    lr = space.params[0]
    assert (lr.kind, lr.low, lr.high) == ("loguniform", 1e-4, 1e-2)  # "1e-4": YAML 1.1 str
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        p = space.suggest(study.ask())
        assert 1e-4 <= p["train.lr"] <= 1e-2 and 0.0 <= p["head.dropout"] <= 0.5
        assert p["model.n_layer"] in (2, 4, 6)
        assert p["finetune.lora.r"] in range(4, 33, 4)
        assert isinstance(p["train.batch_size"], int) and 8 <= p["train.batch_size"] <= 64
    grid = parse_space({"a.b": {"choice": ["x", "y"]}, "c.d": {"int": [4, 12], "step": 4}})
    assert grid.grid() == {"a.b": ["x", "y"], "c.d": [4, 8, 12]} and grid.grid_size() == 6
    with pytest.raises(ConfigError, match="continuous range"):
        space.grid()


BAD_SPACES = [
    ({"train.lrr": {"loguniform": [1e-4, 1e-2]}}, [], ("train.lrr", "unknown field",
                                                      "did you mean 'lr'")),
    ({"head.dropout": {"uniform": [0.5, 0.1]}}, [], ("head.dropout", "empty range")),
    ({"train.batch_size": {"int": [64, 8]}}, [], ("train.batch_size", "empty range")),
    ({"head.dropout": {"choice": []}}, [], ("head.dropout", "non-empty list")),
    ({"train.lr": {"loguniform": [1e-4, 1e-2]}}, ["--sampler", "grid"],
     ("--sampler grid", "train.lr", "continuous range")),
    ({"train.batch_size": {"int": [8, 64]}}, ["--sampler", "grid"],
     ("train.batch_size", "without a step")),
    ({"train.lr": {"normal": [0, 1]}}, [], ("train.lr", "give one distribution")),
    ({"train.lr": {"loguniform": [0.0, 1e-2]}}, [], ("loguniform needs low > 0",)),
    ({"train.lr": {"uniform": [1e-3, 1e-2], "step": 2}}, [], ("unknown option 'step'",)),
    ({"train.batch_size": {"int": [4, 30], "step": 4}}, [], ("does not divide",)),
    ({"head.dropout": {"uniform": [0.0, 1.5]}}, [], ("head.dropout=1.5", "less than 1")),
    ([1, 2], [], ("expected a mapping",)),
]


@pytest.mark.parametrize(("space", "extra", "fragments"), BAD_SPACES,
                         ids=[str(i) for i in range(len(BAD_SPACES))])
def test_bad_space_is_one_line_and_exit_2(files, capsys, space, extra, fragments):
    files["space"].write_text(yaml.safe_dump(space), encoding="utf-8")
    assert_user_error(_args(files, "bad", *extra), capsys, *fragments)
    assert not files["db"].exists()  # refused before the study was made


def test_unknown_model_field_of_a_pretraining_recipe(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("model.n_layerz: {choice: [1, 2]}\n", encoding="utf-8")
    assert_user_error(["tune", "quickstart", "--space", str(space), "--storage",
                       f"sqlite:///{tmp_path}/t.db"], capsys, "model.n_layerz",
                      "unknown field", "n_layer")


def test_other_bad_options_are_one_line(files, capsys, monkeypatch):
    files["space"].unlink()
    assert_user_error(_args(files, "s"), capsys, "search space", "not found")
    files["space"].write_text("train.lr: {loguniform: [1e-4, 1e-2]}\n", encoding="utf-8")
    assert_user_error(["tune", "no-such-recipe", "--space", str(files["space"])], capsys,
                      "recipe no-such-recipe not found", "classify-topic", "gpt-world")
    args = _args(files, "s")
    args[args.index("--storage") + 1] = "not a url"
    assert_user_error(args, capsys, "--storage not a url", "sqlite:///")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if the extra were missing
    assert_user_error(_args(files, "s"), capsys, "pip install 'lmforge[tune]'")


# ----------------------------------------------------------------------------- studies

def test_tiny_study_runs_prunes_and_reports(files, capsys):
    """Three trials: a good learning rate first, then one so small that its first
    evaluation is worse than the median of the finished trials (trial 0's), so it is
    pruned there; then a TPE trial (pruned or not, as its evaluations go)."""
    storage = f"sqlite:///{files['db']}"
    seeded = optuna.create_study(storage=storage, study_name="tiny", direction="minimize")
    seeded.enqueue_trial({"train.lr": 2e-2, "head.dropout": 0.0, "train.batch_size": 32})
    seeded.enqueue_trial({"train.lr": 1e-4, "head.dropout": 0.0, "train.batch_size": 32})
    code, out, err = run_cli(_args(files, "tiny", "--trials", "3", "--seed", "0",
                                   "--prune-after", "1"), capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert trials[0].state.name == "COMPLETE"
    assert trials[1].state.name == "PRUNED" and trials[1].user_attrs["steps"] == 10
    assert trials[1].intermediate_values[10] > trials[0].intermediate_values[10]

    from lmforge.tasks.config import load_finetune_recipe
    from lmforge.train.metrics_log import read_metrics

    for t in trials:  # each trial is a normal run folder holding its own parameters
        run = files["out"] / f"trial_{t.number:04d}"
        assert Path(t.user_attrs["run_dir"]) == run
        cfg = load_finetune_recipe(str(run / "config.yaml"))
        assert cfg.train.lr == t.params["train.lr"]
        assert (cfg.head.dropout, cfg.train.batch_size) == (t.params["head.dropout"],
                                                            t.params["train.batch_size"])
        assert (run / "results.json").is_file() and list((run / "checkpoints").iterdir())
        evals = [r for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r]
        assert evals[-1]["step"] == (10 if t.state.name == "PRUNED" else 20)
        if t.state.name == "COMPLETE":  # the value: the best evaluation of the run
            assert t.value == min(r["val_loss"] for r in evals)

    best = study.best_trial
    assert best.value == min(t.value for t in trials if t.state.name == "COMPLETE")
    recipe = load_finetune_recipe(str(files["out"] / "best.yaml"))
    assert recipe.train.lr == best.params["train.lr"]
    assert recipe.head.dropout == best.params["head.dropout"]
    assert recipe.train.batch_size == best.params["train.batch_size"]
    assert recipe.train.max_steps == 20 and recipe.run.out_dir is None  # the base recipe
    summary = json.loads((files["out"] / "best.json").read_text(encoding="utf-8"))
    assert summary["best"]["trial"] == best.number and summary["best"]["value"] == best.value
    assert summary["trials"]["complete"] == _states(study)["COMPLETE"]
    assert summary["trials"]["pruned"] == _states(study)["PRUNED"]

    with open(files["out"] / "trials.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == [t.state.name.lower() for t in trials]
    assert float(rows[best.number]["value"]) == best.value
    assert len({r["worker"] for r in rows}) == 1
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["trial", "state",
                                                                      "val_loss"])
    assert "train.lr" in lines[head]
    rows_printed = [ln.split() for ln in lines[head + 1:head + 4]]
    assert [r[0] for r in rows_printed] == [f"{i}*" if i == best.number else str(i)
                                            for i in range(3)]
    assert [r[1] for r in rows_printed] == [r["state"] for r in rows]
    assert "trial 1 pruned at step 10" in out
    complete = _states(study)["COMPLETE"]
    for name in PLOTS:
        if name == "param_importances" and complete < 2:  # no variance to share out
            assert not (files["out"] / "plots" / f"{name}.png").exists()
            assert f"plots: {name} left out (it needs 2 completed trials" in out
            continue
        png = (files["out"] / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # Run again: the study already holds its trials, so only the report is rewritten;
    # asking it to maximise instead is refused.
    code, out, err = run_cli(_args(files, "tiny", "--trials", "3"), capsys)
    assert code == 0 and "3 of 3 trials finished" in out and len(study.get_trials()) == 3
    assert_user_error(_args(files, "tiny", "--trials", "3", "--direction", "maximize"),
                      capsys, "was started with --direction minimize")


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.slow  # 15 s: the default suite's budget is spent
@pytest.mark.alone
def test_killed_worker_study_continues_with_two_workers(files, capsys):
    """A worker killed mid-trial leaves its trial RUNNING; a new `lmforge tune --workers
    2` fails it once its heartbeats stop, runs its parameters again and finishes the
    study's trials, with both worker processes taking trials."""
    args = _args(files, "crash", "--trials", "3", "--heartbeat", "2", "--seed", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(files["out"] / "trial_0000" / "metrics.jsonl", proc, 120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    storage = f"sqlite:///{files['db']}"
    study = optuna.load_study(study_name="crash", storage=storage)
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
    lost = study.get_trials()[0]

    code, out, err = run_cli([*args, "--workers", "2"], capsys)
    assert code == 0, err
    trials = study.get_trials()
    assert trials[0].state.name == "FAIL"
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].params == lost.params
    assert retried[0].state.name in ("COMPLETE", "PRUNED")
    # a surplus trial (both workers saw room for the last one) fails before it runs
    workers = {t.user_attrs["worker"] for t in trials[1:]
               if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(workers) == 2, workers
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_sqlite_hands_each_queued_trial_to_one_worker(tmp_path):
    """Four workers (threads, each with its own connection) ask for a trial at the same
    instant while one is queued: exactly one of them gets it. With SQLite's deferred
    transactions two could read it as queued before either wrote, and both ran it (in 2
    to 5 of these 10 rounds, three runs, before open_storage began its transactions with
    BEGIN IMMEDIATE)."""
    import threading

    from lmforge.tune.study import open_storage

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    optuna.create_study(storage=url, study_name="q")
    workers = [optuna.load_study(study_name="q", storage=open_storage(url, 10))
               for _ in range(4)]
    barrier, numbers = threading.Barrier(len(workers)), []

    def work(study) -> None:
        for r in range(10):
            barrier.wait()
            if study is workers[0]:
                study.enqueue_trial({"x": float(r)})
            barrier.wait()
            numbers.append(study.ask().number)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(numbers) == 40 and len(set(numbers)) == 40  # no trial given out twice


# ----------------------------------------------------------------------------- PostgreSQL

def _postgres_binaries() -> tuple[str, str] | None:
    for initdb in [shutil.which("initdb"), *sorted(glob.glob(
            "/usr/lib/postgresql/*/bin/initdb"))]:
        if initdb and os.access(initdb, os.X_OK):
            pg_ctl = str(Path(initdb).with_name("pg_ctl"))
            if os.access(pg_ctl, os.X_OK):
                return initdb, pg_ctl
    return None


@contextlib.contextmanager
def _postgres_server():
    """A throwaway PostgreSQL server on a free loopback port (trust authentication); as
    root, run as the ``postgres`` user (initdb refuses root). Yields its URL."""
    found = _postgres_binaries()
    if found is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
                    "apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 (pip install 'lmforge[tune]')")
    initdb, pg_ctl = found
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="lmforge-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = root / "db"
    try:
        subprocess.run([*as_user, initdb, "-D", str(db), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(db), "-l", str(root / "log"), "-w",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", str(db), "-m", "fast", "-w", "stop"],
                           capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.alone
def test_two_workers_share_a_postgresql_study(files, capsys):
    with _postgres_server() as url:
        args = _args(files, "pg", "--trials", "4", "--workers", "2", "--seed", "0")
        args[args.index("--storage") + 1] = url
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        from lmforge.tune.study import open_storage

        study = optuna.load_study(study_name="pg", storage=open_storage(url, 10))
        trials = study.get_trials()
        assert _states(study).get("COMPLETE", 0) + _states(study).get("PRUNED", 0) == 4
        assert len({t.user_attrs["worker"] for t in trials}) == 2
        assert (files["out"] / "best.yaml").is_file()


@pytest.mark.parametrize("n_complete", [1, 4])
def test_importances_are_drawn_once_two_trials_completed(tmp_path, n_complete):
    """fANOVA shares out the variance between completed trials: with one there is none,
    and the plot is left out with a line saying why; with several it is drawn."""
    from lmforge.tune.report import write_plots

    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("a", 0, 1) + 2 * t.suggest_float("b", 0, 1),
                   n_trials=n_complete)
    lines: list[str] = []
    written = write_plots(study, tmp_path, lines.append)
    drawn = n_complete >= 2
    assert ("param_importances" in written) == drawn
    assert (tmp_path / "param_importances.png").exists() == drawn
    assert any("param_importances left out (it needs 2 completed trials, the study has 1)"
               in ln for ln in lines) == (not drawn)
    assert "optimization_history" in written
