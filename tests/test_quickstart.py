"""``lmforge quickstart`` end to end at a tiny size: every stage runs, the figures it
prints agree with the file it writes, and a rerun replaces its outputs but keeps the
prepared data."""

from __future__ import annotations

import json
import math

from fakes import run_cli

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
