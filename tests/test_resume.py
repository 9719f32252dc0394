"""Exact resume: a run killed with SIGKILL and resumed replays an uninterrupted run."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from lmforge.data.shards import ShardWriter, write_meta
from lmforge.train import latest_checkpoint, list_checkpoints
from lmforge.train.metrics_log import truncate_after

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 30

# The training job. Run as a script (the process we kill) and loaded with runpy for the
# uninterrupted reference and for the resume, so all three build exactly the same run.
SCRIPT = r'''
import sys, time
from pathlib import Path

import torch

from lmforge.config import TrainConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import Callback, LMBatchSource, Trainer


class Slow(Callback):
    def on_step_end(self, step, metrics):
        time.sleep(0.05)


def train(data, run, resume=False, slow=False, max_steps=30):
    cfg = TrainConfig(max_steps=max_steps, batch_size=2, block_size=16, grad_accum=2,
                      lr=3e-3, min_lr=3e-4, warmup_steps=3, log_every=1, eval_every=5,
                      eval_batches=2, ckpt_every=5, keep_last=2, precision="fp32",
                      device="cpu", threads=1)
    torch.manual_seed(123)
    model = GPT(GPTConfig(vocab_size=32, n_layer=2, n_head=2, d_model=32, max_seq_len=16,
                          dropout=0.1))
    trainer = Trainer(model, cfg, LMBatchSource.from_config(data, "train", cfg),
                      LMBatchSource.from_config(data, "val", cfg), run, seed=7,
                      resume=resume, callbacks=[Slow()] if slow else [],
                      show_progress=False)
    return trainer.fit()


if __name__ == "__main__":
    train(Path(sys.argv[1]), Path(sys.argv[2]), slow=True)
'''


def make_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 4000), ("val", 400)):
        w = ShardWriter(root, split, np.uint16)
        w.add_document((np.arange(n) * 5 + rng.integers(0, 2, n)) % 32)
        splits[split] = w.close()
    write_meta(root, dtype=np.uint16, vocab_size=32, splits=splits)
    return root


def lines(run: Path) -> list[dict]:
    text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses


def in_process(fn, *args, **kw):
    threads = torch.get_num_threads()
    try:
        return fn(*args, **kw)
    finally:
        torch.set_num_threads(threads)


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = make_data(tmp_path / "data")
    script = tmp_path / "job.py"
    script.write_text(SCRIPT, encoding="utf-8")
    train = runpy.run_path(str(script), run_name="job")["train"]

    # 1. Start the job in a subprocess and SIGKILL it once a checkpoint past step 5 exists.
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while True:
            ckpts = list_checkpoints(run)
            if ckpts and ckpts[-1].name >= "step_0000010":
                break
            if proc.poll() is not None:
                raise AssertionError(f"job ended early: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(run)
    assert killed_at.name < f"step_{MAX_STEPS:07d}", "the job finished before the kill"
    # Whatever the kill left, add a torn last line as a crash mid-write would.
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 29, "loss": 1.2')

    # 2. Resume to the end (in this process), and 3. run the same job uninterrupted.
    resumed = in_process(train, data, run, resume=True)
    reference = in_process(train, data, tmp_path / "reference")
    assert resumed.steps == reference.steps == MAX_STEPS

    got, want = lines(run), lines(tmp_path / "reference")
    got_train = [(r["step"], r["loss"]) for r in got if "loss" in r]
    want_train = [(r["step"], r["loss"]) for r in want if "loss" in r]
    assert [s for s, _ in got_train] == list(range(1, MAX_STEPS + 1))  # no dups, no gaps
    assert [s for s, _ in want_train] == list(range(1, MAX_STEPS + 1))
    for (s, a), (_, b) in zip(got_train, want_train, strict=True):
        assert a == b, f"step {s}: resumed loss {a} != uninterrupted {b}"
    got_val = [(r["step"], r["val_loss"]) for r in got if "val_loss" in r]
    want_val = [(r["step"], r["val_loss"]) for r in want if "val_loss" in r]
    assert [s for s, _ in got_val] == [s for s, _ in want_val] == [5, 10, 15, 20, 25, 30]
    assert got_val == want_val  # bit-identical, not merely close

    # The final weights agree too (dropout RNG and AdamW state were restored).
    wa = load_file(str(resumed.last_checkpoint / "model.safetensors"))
    wb = load_file(str(reference.last_checkpoint / "model.safetensors"))
    for k in wb:
        assert torch.equal(wa[k], wb[k]), k


def test_truncate_after_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "val_loss": 2.6},
            {"step": 3, "loss": 2.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 4, "lo')
    kept = truncate_after(path, 2)
    assert kept == recs[:3]
    assert [json.loads(x) for x in path.read_text().splitlines()] == recs[:3]
