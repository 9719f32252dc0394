"""``lmforge quickstart`` end to end at a tiny size: every stage runs, the figures it
prints agree with the file it writes, a rerun replaces its outputs but keeps the
prepared data, and a run sized to a time budget prints a plan that ``--steps`` replays
bit for bit."""

from __future__ import annotations

import json
import math
import re

import torch
from fakes import run_cli
from safetensors.torch import load_file

TINY = {"data.world_train_sentences": 3000, "data.world_eval_sentences": 40,
        "tokenizer.vocab_size": 300, "model.n_layer": 1, "model.d_model": 32,
        "model.n_head": 2, "train.max_steps": 80, "train.batch_size": 8,
        "train.eval_every": 40, "train.ckpt_every": 40, "train.eval_batches": 2,
        "train.warmup_steps": 3}


def _args(out):
    return ["quickstart", "--out", str(out), "--no-progress",
            *[a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]]


def test_quickstart_runs_every_stage_and_reports_consistent_figures(tmp_path, capsys):
    out = tmp_path / "qs"
    code, stdout, err = run_cli(_args(out), capsys)
    assert code == 0, err
    for stage in range(1, 7):
        assert f"[{stage}/6]" in stdout
    figures = json.loads((out / "quickstart.json").read_text(encoding="utf-8"))
    assert math.isclose(figures["val_ppl"], math.exp(figures["val_loss"]), rel_tol=1e-9)
    assert math.isclose(figures["bits_ratio"], figures["bits_model"] / figures["bits_true"],
                        rel_tol=1e-9)
    # 80 steps of a 1-layer model learn something: well below a uniform guess over 300 ids
    assert figures["val_loss"] < math.log(300) - 1.0
    assert figures["sampled"] == 50 and 0 <= figures["grammatical"] <= 50
    assert f"val perplexity: {figures['val_ppl']:.3f}" in stdout
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "world" / "test.jsonl").is_file()
    samples = [ln for ln in stdout.splitlines() if ln.startswith("  ") and " -> " in ln]
    assert len(samples) == 6  # three Chinese and three English openings

    # a rerun clears the previous outputs, keeps the prepared data, and succeeds again
    (out / "stale.txt").write_text("old")
    data_before = sorted(p.name for p in (out / "data").iterdir())
    code, _, err = run_cli(_args(out), capsys)
    assert code == 0, err
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in (out / "data").iterdir()) == data_before


def test_quickstart_refuses_a_folder_that_is_not_a_quickstart_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run_cli(_args(out), capsys)
    assert code == 2 and "is not a quickstart run folder" in err
    assert (out / "notes.txt").read_text() == "keep me"


PLANNED = {k: v for k, v in TINY.items() if k not in ("train.max_steps", "train.eval_every",
                                                       "train.ckpt_every", "train.warmup_steps")}


def _planned_args(out, *extra):
    return ["quickstart", "--out", str(out), "--no-progress", *extra,
            *[a for k, v in PLANNED.items() for a in ("--set", f"{k}={v}")]]


def _weights(run):
    ckpt = sorted((run / "checkpoints").glob("step_*"))[-1]
    return load_file(str(ckpt / "model.safetensors"))


def test_quickstart_plan_fits_the_budget_and_replays(tmp_path, capsys):
    """Without a fixed length the run measures itself and prints its plan; the plan is
    in config.yaml and quickstart.json; --steps N replays it bit for bit."""
    out = tmp_path / "planned"
    code, stdout, err = run_cli(_planned_args(out, "--budget", "3"), capsys)
    assert code == 0, err
    m = re.search(r"plan: (\d+) steps.*replay it with: lmforge quickstart --steps (\d+)",
                  stdout)
    assert m and m.group(1) == m.group(2), stdout
    steps = int(m.group(1))
    figures = json.loads((out / "quickstart.json").read_text(encoding="utf-8"))
    assert figures["steps"] == steps and figures["planned_tokens_per_s"] > 0
    assert f"max_steps: {steps}" in (out / "config.yaml").read_text(encoding="utf-8")

    again = tmp_path / "replay"
    code, stdout, err = run_cli(_planned_args(again, "--steps", str(steps)), capsys)
    assert code == 0, err
    assert "plan:" not in stdout and f"{steps} steps" in stdout
    a, b = _weights(out), _weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_quickstart_bad_plan_options(tmp_path, capsys):
    from fakes import assert_user_error

    assert_user_error(["quickstart", "--out", str(tmp_path / "a"), "--steps", "0"], capsys,
                      "--steps must be a positive number")
    assert_user_error(["quickstart", "--out", str(tmp_path / "b"), "--steps", "5", "--set",
                       "train.max_steps=5"], capsys, "given once")
    for bad in ("-1", "inf", "nan"):
        assert_user_error(["quickstart", "--out", str(tmp_path / "c"), "--budget", bad],
                          capsys, "--budget must be a positive number of seconds")
