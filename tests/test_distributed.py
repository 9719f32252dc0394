"""Data-parallel training under torchrun on gloo (2 processes on the CPU): DDP and FSDP2
give the loss sequence of one process with the same global batch; checkpoints reshard
(2 -> 1, 1 -> 2); two "nodes" on 127.0.0.1 equal one; launch mistakes are one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmforge.models.base import load_model_folder
from lmforge.train import checkpoint as ck

BIN = Path(sys.executable).parent
TINY = ["data.world_train_sentences=3000", "data.world_eval_sentences=100",
        "tokenizer.vocab_size=384", "model.n_layer=2", "model.d_model=64", "model.n_head=4",
        "model.n_kv_head=4", "train.warmup_steps=5", "train.precision=fp32",
        "train.device=cpu", "train.threads=1", "sample.prompts=[]", "train.optimizer=adamw",
        "train.eval_every=10", "train.ckpt_every=10", "train.log_every=1",
        "train.keep_last=5", "train.max_steps=20"]
TOL = 1e-5


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _sets(extra: list[str]) -> list[str]:
    return [a for s in TINY + extra for a in ("--set", s)]


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on a timeout the whole group (torchrun and its
    workers) is killed, so that no rank outlives the test."""
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... ran past {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pretrain(out: Path, extra: list[str], *, torchrun: list[str] | None = None,
              resume: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    head = [str(BIN / "torchrun"), *torchrun, "-m", "lmforge"] if torchrun is not None \
        else [str(BIN / "lmforge")]
    cmd = [*head, "pretrain", "quickstart", "--out", str(out), "--no-progress",
           *(["--resume"] if resume else []), *_sets(extra)]
    res = _run(cmd)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def _two(port: int | None = None) -> list[str]:
    return ["--nproc-per-node", "2", "--master-port", str(port or _free_port())]


def _losses(run: Path) -> list[tuple[int, str, float]]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        key = "loss" if "loss" in r else "val_loss"
        out.append((r["step"], key, r[key]))
    return out


def _assert_same(a: Path, b: Path) -> None:
    la, lb = _losses(a), _losses(b)
    assert [x[:2] for x in la] == [x[:2] for x in lb]
    worst = max(abs(x[2] - y[2]) for x, y in zip(la, lb, strict=True))
    assert worst < TOL, worst


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """One process, global batch 8: the reference, and its prepared data."""
    root = tmp_path_factory.mktemp("dist")
    ref = root / "ref"
    _pretrain(ref, ["train.batch_size=8"])
    prepared = ["data.corpus=null", f"data.prepared={ref / 'data'}"]
    return {"root": root, "ref": ref, "prepared": prepared}


@pytest.fixture(scope="module")
def ddp_run(data) -> tuple[Path, subprocess.CompletedProcess]:
    run = data["root"] / "ddp"
    res = _pretrain(run, data["prepared"] + ["train.batch_size=4", "train.distributed=ddp"],
                    torchrun=_two())
    return run, res


def test_ddp_equals_one_process_with_the_same_global_batch(data, ddp_run):
    run, res = ddp_run
    _assert_same(data["ref"], run)
    assert "global batch 8 = batch_size 4 x grad_accum 1 x world_size 2" in res.stderr
    assert res.stdout.count("done: 20 steps") == 1  # rank 0 reports, once
    last = run / "checkpoints" / "step_0000020"
    ck.verify_checkpoint(last)  # the shards are covered by the checksums
    assert sorted(p.name for p in (last / "dcp").glob("*.distcp")) == ["__0_0.distcp",
                                                                       "__1_0.distcp"]
    # the folder is an ordinary model folder with the full weights
    dist_model = load_model_folder(last)
    ref_model = load_model_folder(data["ref"] / "checkpoints" / "step_0000020")
    for (name, p), q in zip(dist_model.state_dict().items(),
                            ref_model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=TOL, rtol=0, msg=name)
    assert (run / "loss.png").is_file()


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_fsdp_equals_one_process_with_grad_accum(data):
    ref, run = data["root"] / "ref_accum", data["root"] / "fsdp_accum"
    accum = data["prepared"] + ["train.grad_accum=2"]
    _pretrain(ref, accum + ["train.batch_size=4"])
    res = _pretrain(run, accum + ["train.batch_size=2", "train.distributed=fsdp"],
                    torchrun=_two())
    assert "fsdp on 2 processes (gloo): global batch 8" in res.stderr
    _assert_same(ref, run)


def test_resume_reshards_two_processes_to_one(data, ddp_run):
    run = data["root"] / "ddp_to_one"
    shutil.copytree(ddp_run[0], run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    res = _pretrain(run, data["prepared"] + ["train.batch_size=8"], resume=True)
    assert "will not match" not in res.stderr  # batch 4 x 2 ranks = batch 8 x 1
    _assert_same(data["ref"], run)


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_resume_reshards_one_process_to_two(data):
    run = data["root"] / "one_to_fsdp"
    shutil.copytree(data["ref"], run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    _pretrain(run, ["train.batch_size=4", "train.distributed=fsdp"],  # its own data/
              torchrun=_two(), resume=True)
    _assert_same(data["ref"], run)
    assert (run / "checkpoints" / "step_0000020" / "dcp").is_dir()


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_tensor_parallel_equals_one_process_and_resumes_on_one(data):
    """tp: every rank reads the whole batch; the checkpoint keeps the one-process layout
    (fused qkv rows in their order), so one process continues it exactly."""
    run = data["root"] / "tp"
    extra = data["prepared"] + ["train.batch_size=8"]
    res = _pretrain(run, extra + ["train.distributed=tp"], torchrun=_two())
    assert "tp over 2 processes (gloo): global batch 8" in res.stderr
    _assert_same(data["ref"], run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    _pretrain(run, extra, resume=True)
    _assert_same(data["ref"], run)


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_pipeline_parallel_equals_one_process_and_reshards_both_ways(data):
    """pp: two stages of one block each; GPipe from scratch, 1F1B resumed from one
    process's checkpoint; one process resumes the pipeline's."""
    extra = data["prepared"] + ["train.batch_size=8"]
    run = data["root"] / "pp"
    res = _pretrain(run, extra + ["train.distributed=pp", "train.pp_schedule=gpipe"],
                    torchrun=_two())
    assert "pp over 2 stages (gloo, gpipe, 4 micro-batches): global batch 8" in res.stderr
    _assert_same(data["ref"], run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    _pretrain(run, extra, resume=True)  # 2 stages -> 1 process
    _assert_same(data["ref"], run)

    run = data["root"] / "one_to_pp"
    shutil.copytree(data["ref"], run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    _pretrain(run, ["train.batch_size=8", "train.distributed=pp"], torchrun=_two(),
              resume=True)
    _assert_same(data["ref"], run)


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_two_nodes_on_loopback_equal_one(data):
    """Two torchrun invocations (--nnodes 2 --node-rank 0/1), one process each."""
    run, port = data["root"] / "two_nodes", _free_port()
    extra = data["prepared"] + ["train.batch_size=4", "train.distributed=ddp"]
    def node(rank: int) -> list[str]:
        return [str(BIN / "torchrun"), "--nnodes", "2", "--node-rank", str(rank),
                "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port",
                str(port), "-m", "lmforge", "pretrain", "quickstart", "--out", str(run),
                "--no-progress", *_sets(extra)]

    procs = [subprocess.Popen(node(r), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(), start_new_session=True) for r in (0, 1)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        _kill_groups(procs)
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    _assert_same(data["ref"], run)


def test_a_multi_process_launch_of_a_single_process_recipe_is_refused(data, tmp_path):
    res = _pretrain(tmp_path / "r", data["prepared"], torchrun=_two(), check=False)
    assert res.returncode != 0
    assert "WORLD_SIZE=2 but train.distributed is none; add --set train.distributed=ddp" \
        in res.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.parametrize("extra, message", [
    (["train.distributed=ddp"], "error: train.distributed needs a torchrun launch"),
    (["train.distributed=ddp", "train.optimizer=muon"],
     "error: config error: train: value error, optimizer=muon cannot run with "
     "distributed=ddp yet"),
    (["train.distributed=mpi"], "error: config error: train.distributed"),
])
def test_distributed_settings_without_their_launch_are_one_line(data, tmp_path, extra,
                                                                 message, capsys):
    from fakes import assert_user_error

    _, line = assert_user_error(["pretrain", "quickstart", "--out", str(tmp_path / "r"),
                                 "--no-progress", *_sets(data["prepared"] + extra)], capsys)
    assert line.startswith(message), line


@pytest.mark.slow  # under 20 s, but the default suite's budget is spent
@pytest.mark.alone
def test_finetune_under_ddp_equals_one_process(data, tmp_path):
    """``torchrun -m lmforge finetune``: a BERT topic classifier (pretrained backbone, no
    dropout) on 2 processes x 8 equals 1 process x 16; rank 0 evaluates and reports."""
    import yaml

    backbone = data["root"] / "bert"
    subprocess.run([str(BIN / "lmforge"), "pretrain", "bert-world", "--out", str(backbone),
                    "--no-progress", *[a for s in (
                        "data.world_train_sentences=1000", "tokenizer.vocab_size=384",
                        "model.n_layer=1", "model.d_model=32", "model.n_head=2",
                        "train.max_steps=5", "train.eval_every=5", "train.ckpt_every=5",
                        "train.warmup_steps=1", "train.precision=fp32", "train.threads=1")
                        for a in ("--set", s)]], check=True, capture_output=True, env=_env())
    recipe = tmp_path / "topic.yaml"
    recipe.write_text(yaml.safe_dump({
        "run": {"name": "topic", "seed": 0},
        "data": {"world": "topic", "langs": ["en"], "max_length": 48,
                 "world_sizes": {"train": 600, "val": 60, "test": 60, "test_unseen": 20}},
        "backbone": {"path": str(backbone)},
        "head": {"pooling": "mean", "dropout": 0.0},
        "train": {"max_steps": 12, "lr": 2e-3, "warmup_steps": 2, "eval_every": 6,
                  "ckpt_every": 6, "log_every": 1, "keep_last": 3, "precision": "fp32",
                  "threads": 1, "device": "cpu"}}))

    def finetune(out: Path, extra: list[str], torchrun: list[str] | None = None):
        head = [str(BIN / "torchrun"), *torchrun, "-m", "lmforge"] if torchrun \
            else [str(BIN / "lmforge")]
        res = _run([*head, "finetune", str(recipe), "--out", str(out), "--no-progress",
                    *[a for s in extra for a in ("--set", s)]])
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    one, two = tmp_path / "one", tmp_path / "two"
    finetune(one, ["train.batch_size=16"])
    res = finetune(two, ["train.batch_size=8", "train.distributed=ddp"], _two())
    assert "global batch 16 = batch_size 8 x grad_accum 1 x world_size 2" in res.stderr
    assert res.stdout.count("done: 12 steps") == 1
    _assert_same(one, two)
    test = [json.loads((r / "results.json").read_text())["splits"]["test"]
            for r in (one, two)]
    assert test[0] == pytest.approx(test[1], abs=1e-6)


def _kill_groups(procs: list[subprocess.Popen]) -> None:
    """Kill what is left of launches started with ``start_new_session``."""
    import signal

    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


def _kill_one_rank(run: Path, after: str, proc: subprocess.Popen) -> None:
    """SIGKILL one worker of ``proc`` (a torchrun) once checkpoint ``after`` exists."""
    import psutil

    deadline = time.time() + 240
    while not (run / "checkpoints" / after).is_dir():
        assert proc.poll() is None and time.time() < deadline, "the run ended too early"
        time.sleep(0.05)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "lmforge" in " ".join(c.cmdline())]
    assert len(workers) == 2
    workers[-1].kill()


@pytest.mark.slow
@pytest.mark.alone
def test_a_killed_rank_ends_the_job_and_max_restarts_resumes_it_exactly(data):
    long = data["prepared"] + ["train.batch_size=4", "train.distributed=ddp",
                               "train.max_steps=200", "train.ckpt_every=20",
                               "train.eval_every=20", "train.keep_last=20"]
    whole = data["root"] / "whole"
    _pretrain(whole, long, torchrun=_two())

    def launch_and_kill(run: Path, restarts: int) -> tuple[int, str, str]:
        """Start the run, SIGKILL a rank after step 40; the launch's (rc, out, err)."""
        cmd = [str(BIN / "torchrun"), *_two(), "--max-restarts", str(restarts), "-m",
               "lmforge", "pretrain", "quickstart", "--out", str(run), "--no-progress",
               *_sets(long)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=_env(), start_new_session=True)
        try:
            _kill_one_rank(run, "step_0000040", proc)
            out, err = proc.communicate(timeout=300)
        finally:
            _kill_groups([proc])
        return proc.returncode, out, err

    # no restarts: the job ends (no hang) naming the dead rank, the checkpoint is intact
    run = data["root"] / "killed"
    rc, _out, err = launch_and_kill(run, 0)
    assert rc != 0
    assert "exitcode  : -9" in err and "SIGKILL" in err
    last = ck.latest_checkpoint(run)
    ck.verify_checkpoint(last)
    # --resume by hand continues it exactly
    _pretrain(run, long, torchrun=_two(), resume=True)
    _assert_same(whole, run)

    # --max-restarts 1: torchrun restarts the group, which resumes by itself
    run = data["root"] / "restarted"
    rc, out, err = launch_and_kill(run, 1)
    assert rc == 0, err[-3000:]
    assert "done: 200 steps" in out
    _assert_same(whole, run)
