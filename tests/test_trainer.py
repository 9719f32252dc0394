"""End-to-end behaviour of the Trainer on a tiny GPT and tiny token shards."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.data.shards import ShardWriter, write_meta
from lmforge.errors import ConfigError, TrainingError
from lmforge.models.base import load_model_folder
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import (
    Callback,
    LMBatchSource,
    Trainer,
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    read_metrics,
    resolve_precision,
)
from lmforge.train.precision import cpu_has_fast_bf16

VOCAB = 32


@pytest.fixture(autouse=True)
def _restore_threads():
    """The trainer sets torch's thread count (cfg.threads); give other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def make_data(root: Path, vocab: int = VOCAB) -> Path:
    """Tiny, learnable shards: mostly ``next = 3 * prev + 1 (mod vocab)``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 6000), ("val", 800)):
        ids = np.empty(n, dtype=np.int64)
        ids[0] = 1
        for i in range(1, n):
            ids[i] = (3 * ids[i - 1] + 1) % vocab if rng.random() < 0.9 else rng.integers(vocab)
        w = ShardWriter(root, split, np.uint16)
        w.add_document(ids)
        splits[split] = w.close()
    write_meta(root, dtype=np.uint16, vocab_size=vocab, splits=splits)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("shards"))


def tiny_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, n_layer=2, n_head=2, d_model=32, max_seq_len=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(max_steps=20, batch_size=4, block_size=16, lr=3e-3, min_lr=3e-4,
                warmup_steps=2, log_every=5, eval_every=10, eval_batches=2, ckpt_every=10,
                precision="fp32", device="cpu", threads=1)
    base.update(kw)
    return TrainConfig(**base)


def make_trainer(data_dir, run_dir, cfg=None, model=None, with_val=True, **kw) -> Trainer:
    cfg = cfg or tiny_cfg()
    kw.setdefault("show_progress", False)
    val = LMBatchSource.from_config(data_dir, "val", cfg) if with_val else None
    return Trainer(model or tiny_gpt(), cfg, LMBatchSource.from_config(data_dir, "train", cfg),
                   val, run_dir, seed=3, **kw)


class FakeTokenizer:
    def save(self, folder):
        (Path(folder) / "tokenizer.json").write_text('{"model": "fake"}', encoding="utf-8")


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append(("start",))

    def on_step_end(self, step, metrics):
        assert isinstance(metrics["loss"], torch.Tensor) and "lr" in metrics
        self.events.append(("step", step))

    def on_eval(self, step, metrics):
        self.events.append(("eval", step, dict(metrics)))

    def on_checkpoint(self, step, path):
        assert Path(path).is_dir()
        self.events.append(("ckpt", step))

    def on_train_end(self, result):
        self.events.append(("end", result.stopped_reason))


def test_fit_writes_a_readable_run_folder(data_dir, tmp_path):
    rec = Recorder()
    calls = []

    def evaluator(model):
        calls.append(model.training)
        return {"world_bits": 1.5}

    cfg = tiny_cfg(max_steps=30, keep_last=1)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg, callbacks=[rec],
                           evaluators=[evaluator], tokenizer=FakeTokenizer(),
                           provenance={"recipe": {"run": {"name": "t"}}})
    result = trainer.fit()

    assert result.steps == 30 and result.stopped_reason == "max_steps"
    assert result.tokens_seen == 30 * 4 * 16 and result.tokens_per_sec > 0
    assert calls == [False, False, False]  # evaluators run in eval mode, once per eval
    run = tmp_path / "run"
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = read_metrics(run / "metrics.jsonl")
    train_lines = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train_lines] == [5, 10, 15, 20, 25, 30]
    assert set(train_lines[0]) >= {"step", "loss", "lr", "tok_per_s", "grad_norm", "time"}
    assert [r["step"] for r in evals] == [10, 20, 30]
    for r in evals:
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]))
        assert r["world_bits"] == 1.5
    assert train_lines[-1]["loss"] < train_lines[0]["loss"]  # it learns
    assert result.final_val_loss == evals[-1]["val_loss"]
    assert result.best_val_loss == min(r["val_loss"] for r in evals)

    # Hooks, in order.
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and rec.events[-1] == ("end", "max_steps")
    assert [e[1] for e in rec.events if e[0] == "step"] == list(range(1, 31))
    assert [e[1] for e in rec.events if e[0] == "ckpt"] == [10, 20, 30]
    assert rec.events[kinds.index("eval")][2]["world_bits"] == 1.5

    # keep_last=1 plus the best; the last is a loadable model folder.
    ckpts = list_checkpoints(run)
    assert latest_checkpoint(run) == ckpts[-1] == result.last_checkpoint
    assert best_checkpoint(run) == result.best_checkpoint in ckpts
    assert len(ckpts) <= 2
    last = result.last_checkpoint
    assert sorted(p.name for p in last.iterdir()) == [
        "config.json", "lmforge.json", "model.safetensors", "optimizer.pt",
        "tokenizer.json", "trainer_state.json"]
    loaded = load_model_folder(last)
    for a, b in zip(loaded.state_dict().values(), trainer.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    meta = json.loads((last / "lmforge.json").read_text())
    assert meta["recipe"] == {"run": {"name": "t"}}
    assert meta["training"]["step"] == 30
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["config"]["max_steps"] == 30
    assert set(state["sha256"]) == {"optimizer.pt", "tokenizer.json", "config.json",
                                    "lmforge.json"}
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_bf16_autocast_keeps_fp32_master_weights(data_dir, tmp_path):
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    auto = resolve_precision("auto", torch.device("cpu"))
    assert auto is (torch.bfloat16 if cpu_has_fast_bf16() else None)
    cfg = tiny_cfg(max_steps=6, precision="bf16", eval_every=3, ckpt_every=6)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg)
    result = trainer.fit()
    assert trainer.amp_dtype is torch.bfloat16
    assert math.isfinite(result.final_val_loss)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    state = trainer.optimizer.state_dict()["state"]
    assert all(s["exp_avg"].dtype == torch.float32 for s in state.values())


def test_resume_keeps_the_precision_auto_measured_when_the_run_began(data_dir, tmp_path,
                                                                      monkeypatch):
    """precision: auto is measured; a run resumed where it measures otherwise (another
    machine, or a borderline one) continues in the precision it was trained in."""
    import lmforge.train.trainer as trainer_module

    here = resolve_precision("auto", torch.device("cpu"))
    other = None if here is torch.bfloat16 else torch.bfloat16
    real = trainer_module.resolve_precision
    monkeypatch.setattr(trainer_module, "resolve_precision",
                        lambda p, d: other if p == "auto" else real(p, d))
    cfg = tiny_cfg(max_steps=6, precision="auto", eval_every=3, ckpt_every=3,
                   optimizer="muon")
    run = tmp_path / "run"
    make_trainer(data_dir, run, cfg).fit()
    monkeypatch.setattr(trainer_module, "resolve_precision", real)
    with pytest.warns(UserWarning, match="resuming in"):
        resumed = make_trainer(data_dir, run, cfg, resume=True)
    assert resumed.amp_dtype is other
    assert resumed.optimizer.muon.ns_dtype is (other or torch.float32)


class PoisonAfter(Callback):
    """Fill the weights with NaN after step ``n`` (simulates a diverging run)."""

    def __init__(self, n):
        self.n = n

    def on_train_start(self, trainer):
        self.model = trainer.model

    def on_step_end(self, step, metrics):
        if step == self.n:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))


def test_nan_loss_stops_with_the_last_good_checkpoint(data_dir, tmp_path):
    cfg = tiny_cfg(max_steps=10, ckpt_every=2, eval_every=100)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg, callbacks=[PoisonAfter(3)])
    with pytest.raises(TrainingError) as ei:
        trainer.fit()
    msg = str(ei.value)
    good = tmp_path / "run" / "checkpoints" / "step_0000002"
    assert msg == f"loss became nan at step 4; the last good checkpoint is {good}"
    assert ei.value.result.stopped_reason == "nan"
    assert latest_checkpoint(tmp_path / "run") == good  # nothing written after
    model = load_model_folder(good)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_weights_are_never_checkpointed(data_dir, tmp_path):
    # Poisoned right before a checkpoint step (and no evaluation to notice it first):
    # the weights check refuses to save them.
    cfg = tiny_cfg(max_steps=10, ckpt_every=2, eval_every=100)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg, callbacks=[PoisonAfter(4)],
                           with_val=False)
    with pytest.raises(TrainingError, match=r"weights became nan at step 4 .*step_0000002"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "run").name == "step_0000002"


def test_infinite_loss_from_the_objective(data_dir, tmp_path):
    def inf_objective(model, batch):
        loss = model(batch["input_ids"]).float().mean() * 0 + float("inf")
        return loss, {}, batch["labels"].numel()

    trainer = make_trainer(data_dir, tmp_path / "run", tiny_cfg(), objective=inf_objective)
    with pytest.raises(TrainingError, match="loss became inf at step 1; no checkpoint"):
        trainer.fit()


def test_early_stopping(data_dir, tmp_path):
    # A learning rate this small leaves the val loss flat: no improvement >= min_delta.
    cfg = tiny_cfg(max_steps=50, lr=1e-9, min_lr=0, schedule="constant", warmup_steps=0,
                   eval_every=2, ckpt_every=100, early_stop_patience=2,
                   early_stop_min_delta=0.01)
    result = make_trainer(data_dir, tmp_path / "run", cfg).fit()
    assert result.stopped_reason == "early_stop"
    assert result.steps == 6  # evals at 2 (reference), 4 and 6 (no improvement)
    assert result.last_checkpoint.name == "step_0000006"
    state = json.loads((result.last_checkpoint / "trainer_state.json").read_text())
    assert state["early_stopping"]["evals_without_improvement"] == 2
    assert [h["step"] for h in state["eval_history"]] == [2, 4, 6]
    again = make_trainer(data_dir, tmp_path / "run", cfg, resume=True).fit()
    assert again.stopped_reason == "early_stop" and again.steps == 6


def test_callback_can_stop_the_run(data_dir, tmp_path):
    class StopAt(Callback):
        def on_train_start(self, trainer):
            self.trainer = trainer

        def on_step_end(self, step, metrics):
            if step == 3:
                self.trainer.request_stop("enough")

    result = make_trainer(data_dir, tmp_path / "run", tiny_cfg(), callbacks=[StopAt()]).fit()
    assert result.stopped_reason == "callback:enough"
    assert result.steps == 3 and result.last_checkpoint.name == "step_0000003"


def test_fresh_run_refuses_a_folder_with_checkpoints(data_dir, tmp_path):
    make_trainer(data_dir, tmp_path / "run", tiny_cfg(max_steps=2, ckpt_every=2)).fit()
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        make_trainer(data_dir, tmp_path / "run", tiny_cfg(max_steps=2))


def test_vocab_mismatch_is_a_config_error(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="model.vocab_size"):
        make_trainer(data_dir, tmp_path / "run", model=tiny_gpt(vocab_size=8))


def test_compile_failure_falls_back_to_eager(data_dir, tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, *a, **k):
            raise RuntimeError("inductor exploded\nlong traceback")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: Broken())
    trainer = make_trainer(data_dir, tmp_path / "run", tiny_cfg(max_steps=3, compile=True))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result = trainer.fit()
    assert result.steps == 3 and trainer.train_model is trainer.model
    assert any("torch.compile failed (inductor exploded)" in str(x.message) for x in w)


def test_progress_bar_on_a_pipe(data_dir, tmp_path, capsys):
    make_trainer(data_dir, tmp_path / "run", tiny_cfg(max_steps=10),
                 show_progress=True).fit()
    err = capsys.readouterr().err
    assert "train" in err and "step 10: val_loss" in err


def test_deferred_nan_check_as_on_gpus(data_dir, tmp_path):
    # GPUs check finiteness only at logging/eval/checkpoint steps; the run still stops
    # before any checkpoint of the poisoned weights.
    cfg = tiny_cfg(max_steps=10, ckpt_every=4, log_every=100, eval_every=100)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg, callbacks=[PoisonAfter(5)])
    trainer.check_every_step = False
    with pytest.raises(TrainingError, match=r"loss became nan at step 8; the last good "
                                            r"checkpoint is .*step_0000004$"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "run").name == "step_0000004"


def test_evaluation_uses_eval_batches_and_weights_by_tokens(data_dir, tmp_path):
    class Endless:
        """Eval batches forever: the trainer must stop at cfg.eval_batches."""

        def __init__(self):
            self.served = 0

        def batch(self, step, micro, rng):
            raise AssertionError("not used")

        def eval_batches(self):
            g = torch.Generator().manual_seed(0)
            while True:
                self.served += 1
                x = torch.randint(0, VOCAB, (2, 16), generator=g)
                y = x.clone()
                if self.served == 2:
                    y[:, 4:] = -100  # fewer counted tokens in the second batch
                yield {"input_ids": x, "labels": y}

    cfg = tiny_cfg(eval_batches=3)
    src = Endless()
    trainer = Trainer(tiny_gpt(), cfg, LMBatchSource.from_config(data_dir, "train", cfg), src,
                      tmp_path / "run", seed=0, show_progress=False)
    ev = trainer.evaluate()
    assert src.served == 3
    # The token-weighted mean over the same three batches, computed directly.
    gen = Endless().eval_batches()
    nll, n = 0.0, 0
    with torch.no_grad():
        for _ in range(3):
            b = next(gen)
            logits = trainer.model(b["input_ids"]).float()
            nll += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, VOCAB), b["labels"].reshape(-1), reduction="sum"))
            n += int((b["labels"] != -100).sum())
    assert ev["val_loss"] == pytest.approx(nll / n, rel=1e-5)
    assert ev["val_ppl"] == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_best_checkpoint_and_early_stopping_follow_best_metric(data_dir, tmp_path):
    # A scripted validation score: it peaks at the 2nd evaluation (step 4), then falls.
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.4, 0.3])
    cfg = tiny_cfg(max_steps=20, eval_every=2, ckpt_every=2, keep_last=1,
                   best_metric="val_score", early_stop_patience=3)
    trainer = make_trainer(data_dir, tmp_path / "run", cfg,
                           evaluators=[lambda m: {"val_score": next(scores)}])
    result = trainer.fit()
    assert result.stopped_reason == "early_stop" and result.steps == 10
    assert result.best_step == 4 and result.best_value == pytest.approx(0.9)
    # the best checkpoint by the metric is kept (beside the last), whatever val_loss says
    assert result.best_checkpoint.name == "step_0000004"
    assert {p.name for p in (tmp_path / "run/checkpoints").iterdir()} == {
        "step_0000004", "step_0000010"}
    with pytest.raises(TrainingError, match="best_metric.*no 'val_nope'"):
        make_trainer(data_dir, tmp_path / "run2", tiny_cfg(best_metric="val_nope")).fit()
