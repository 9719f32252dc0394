"""Checkpoint layout, helpers, and clear errors for damaged or mismatched checkpoints."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.data.shards import ShardWriter, write_meta
from lmforge.errors import CheckpointError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import (
    LMBatchSource,
    Trainer,
    best_checkpoint,
    build_optimizer,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    verify_checkpoint,
)
from lmforge.train.checkpoint import get_rng_state, prune_checkpoints, set_rng_state


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    """The trainer sets torch's thread count (cfg.threads); give other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def make_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 3000), ("val", 400)):
        w = ShardWriter(root, split, np.uint16)
        w.add_document(rng.integers(0, 32, n))
        splits[split] = w.close()
    write_meta(root, dtype=np.uint16, vocab_size=32, splits=splits)
    return root


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=32, n_layer=2, n_head=2, d_model=32, max_seq_len=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


CFG = TrainConfig(max_steps=6, batch_size=2, block_size=16, warmup_steps=1, log_every=2,
                  eval_every=2, eval_batches=1, ckpt_every=2, keep_last=5,
                  precision="fp32", device="cpu", threads=1)


def trainer_for(data, run, model=None, resume=True, cfg=CFG) -> Trainer:
    return Trainer(model or tiny_gpt(), cfg, LMBatchSource.from_config(data, "train", cfg),
                   LMBatchSource.from_config(data, "val", cfg), run, seed=0, resume=resume,
                   show_progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    data = make_data(root / "data")
    run = root / "run"
    trainer_for(data, run, resume=False).fit()
    return data, run


@pytest.fixture
def run_copy(trained, tmp_path):
    data, run = trained
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return data, dst


def test_helpers_find_latest_and_best(trained):
    _, run = trained
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["step_0000002", "step_0000004", "step_0000006"]
    assert latest_checkpoint(run) == ckpts[-1]
    losses = {p: json.loads((p / "trainer_state.json").read_text())["val_loss"]
              for p in ckpts}
    assert best_checkpoint(run) == min(losses, key=losses.get)
    assert latest_checkpoint(run.parent / "nothing") is None
    assert best_checkpoint(run.parent / "nothing") is None
    state = verify_checkpoint(ckpts[-1], tiny_gpt())
    assert state["step"] == 6 and state["data"]["next_step"] == 6


def test_prune_keeps_the_last_and_the_best(run_copy):
    _, run = run_copy
    ckpts = list_checkpoints(run)
    removed = prune_checkpoints(run, keep_last=1, keep={ckpts[0]})
    assert removed == [ckpts[1]]
    assert list_checkpoints(run) == [ckpts[0], ckpts[2]]


def test_load_checkpoint_restores_model_and_optimizer(trained):
    _, run = trained
    model = tiny_gpt()
    opt = build_optimizer(model, CFG)
    state, payload = load_checkpoint(latest_checkpoint(run), model, opt)
    assert state["step"] == 6
    assert payload["scheduler"]["step"] == 6
    assert all(float(s["step"]) == 6 for s in opt.state_dict()["state"].values())


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = {
    "truncated safetensors": (lambda c: _truncate(c / "model.safetensors"),
                              "model.safetensors is corrupt or truncated"),
    "truncated optimizer.pt": (lambda c: _truncate(c / "optimizer.pt"),
                               "optimizer.pt is corrupt or truncated"),
    "garbage trainer_state.json": (lambda c: (c / "trainer_state.json").write_text("{garb"),
                                   "trainer_state.json is corrupt"),
    "missing optimizer.pt": (lambda c: (c / "optimizer.pt").unlink(),
                             "incomplete: optimizer.pt is missing"),
    "missing model.safetensors": (lambda c: (c / "model.safetensors").unlink(),
                                  "incomplete: model.safetensors is missing"),
    "missing trainer_state.json": (lambda c: (c / "trainer_state.json").unlink(),
                                   "incomplete: trainer_state.json is missing"),
    "missing config.json": (lambda c: (c / "config.json").unlink(),
                            "incomplete: config.json is missing"),
    "garbage lmforge.json": (lambda c: (c / "lmforge.json").write_text("]"),
                             "lmforge.json is corrupt"),
    "edited config.json": (lambda c: (c / "config.json").write_text("{}"),
                           "config.json is corrupt or truncated"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_gives_a_one_line_error(run_copy, damage):
    data, run = run_copy
    ckpt = latest_checkpoint(run)
    breaker, expected = DAMAGE[damage]
    breaker(ckpt)
    with pytest.raises(CheckpointError) as ei:
        verify_checkpoint(ckpt)
    msg = str(ei.value)
    assert expected in msg and "\n" not in msg
    assert str(ckpt) in msg  # names the checkpoint (and the file)
    with pytest.raises(CheckpointError, match=expected.split(" ")[0]):
        trainer_for(data, run)  # resuming reports the same problem


def test_optimizer_pt_that_does_not_unpickle(run_copy):
    # Damage that keeps the recorded checksum valid still gives a clear error.
    data, run = run_copy
    ckpt = latest_checkpoint(run)
    (ckpt / "optimizer.pt").write_bytes(b"not a zip file at all")
    state = json.loads((ckpt / "trainer_state.json").read_text())
    from lmforge.models.base import sha256_file

    state["sha256"]["optimizer.pt"] = sha256_file(ckpt / "optimizer.pt")
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"optimizer.pt is corrupt or truncated: .+"):
        trainer_for(data, run)


def test_resume_without_checkpoint(tmp_path, trained):
    data, _ = trained
    with pytest.raises(CheckpointError, match="cannot resume: .* has no checkpoint"):
        trainer_for(data, tmp_path / "empty")


def test_resume_with_a_different_model_config(run_copy):
    data, run = run_copy
    with pytest.raises(CheckpointError, match=r"different model config: n_layer=2 "
                                              r"\(model has 3\)"):
        trainer_for(data, run, model=tiny_gpt(n_layer=3))


def test_resume_of_a_finished_run_returns_at_once(run_copy):
    data, run = run_copy
    result = trainer_for(data, run).fit()
    assert result.steps == 6 and result.stopped_reason == "max_steps"


def test_stale_staging_folders_are_removed(run_copy):
    data, run = run_copy
    stale = run / "checkpoints" / ".step_0000008.abc.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(run).name == "step_0000006"  # hidden folders never count
    trainer_for(data, run)
    assert not stale.exists()


def test_rng_state_round_trip():
    state = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
