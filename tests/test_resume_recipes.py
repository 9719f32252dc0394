"""Exact resume across the built-in recipes and trainer options.

``test_resume.py`` SIGKILLs a hand-built GPT run; this file resumes ``pretrain`` runs of
the other recipes (MLM with random masks, NSP, whole-word masking, span corruption,
translation with label smoothing, TBPTT language models, ...) and trainer options (bf16,
early stopping, keep_last pruning with the best checkpoint kept, intervals that do not
divide max_steps). Each case trains tiny models three times: uninterrupted to
``max_steps``, interrupted (an exception from a callback, like a kill, right after a
checkpoint or in the middle of the next logging window) and resumed to ``max_steps``.
The resumed run must end bit for bit where the uninterrupted one does: weights, AdamW
(or Muon) and RNG state, trainer state, every metrics line (except wall-clock fields) and samples.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.config import load_recipe
from lmforge.pretrain import _data_fingerprint, pretrain
from lmforge.train import list_checkpoints

CONFIGS = Path(__file__).resolve().parents[1] / "lmforge" / "configs"

TINY = ["data.world_train_sentences=300", "data.world_eval_sentences=20",
        "data.val_fraction=0.1", "tokenizer.vocab_size=300", "train.max_steps=6",
        "train.ckpt_every=3", "train.eval_every=3", "train.eval_batches=2",
        "train.batch_size=4", "train.block_size=16", "train.warmup_steps=2",
        "train.log_every=1", "train.keep_last=5", "train.threads=1", "train.device=cpu",
        "train.precision=fp32", "sample.max_new_tokens=8"]
GPT = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.max_seq_len=16"]
RNN = ["model.n_layer=1", "model.d_embed=16", "model.d_hidden=16"]

# id: (recipe, overrides, interrupted at step, "ckpt" (right after the checkpoint at that
# step) or "step" (after that step's update, the checkpoint before it being the latest))
CASES = {
    "rnn-lstm-dropout": ("rnn-world", RNN, 3, "ckpt"),
    "rnn-gru-accum2": ("rnn-world", RNN + ["model.cell=gru", "model.n_layer=2",
                                           "train.grad_accum=2", "train.log_every=2"],
                       4, "step"),
    "bert-mlm-dropout": ("bert-world", ["model.n_layer=1", "model.d_model=32", "model.n_head=2",
                                        "model.max_position=16", "model.d_ff=64",
                                        "model.dropout=0.1"], 3, "ckpt"),
    "bert-nsp-wholeword": ("bert-world", ["model.n_layer=1", "model.d_model=32",
                                          "model.n_head=2", "model.max_position=16",
                                          "model.d_ff=64", "model.head=pretraining",
                                          "train.nsp=true", "train.whole_word_mask=true"],
                           3, "ckpt"),
    "deberta-mlm": ("deberta-world", ["model.n_layer=1", "model.d_model=32", "model.n_head=2",
                                      "model.max_seq_len=16", "model.d_ff=64",
                                      "model.position_buckets=8"], 3, "ckpt"),
    "t5-span-dropout": ("t5-world", ["model.n_layer=1", "model.d_model=32", "model.n_head=2",
                                     "model.d_kv=16", "model.d_ff=64", "model.dropout=0.1",
                                     "train.n_sentinels=10"], 3, "ckpt"),
    "transformer-mt-smoothing": ("transformer-mt", [
        "model.n_encoder_layers=1", "model.n_decoder_layers=1", "model.d_model=32",
        "model.n_head=2", "model.d_ff=64", "model.max_seq_len=16"], 3, "ckpt"),
    "seq2seq-mt": ("seq2seq-mt", ["model.d_embed=16", "model.d_hidden=16"], 3, "ckpt"),
    # Llama style, dropout, gradient accumulation, forced bf16 autocast, samples.
    "gpt-llama-bf16": ("gpt-world", GPT + ["model.style=llama", "model.n_kv_head=1",
                                           "model.dropout=0.1", "train.grad_accum=2",
                                           "train.precision=bf16"], 4, "step"),
    # Muon for the hidden matrices + AdamW for the rest: both states saved and restored.
    "gpt-muon": ("gpt-world", GPT + ["train.optimizer=muon"], 3, "ckpt"),
    # The early-stopping counter is 1 at the checkpoint; the resumed run stops at step 4.
    "gpt-early-stop": ("gpt-world", GPT + ["train.max_steps=8", "train.eval_every=2",
                                           "train.early_stop_patience=2",
                                           "train.early_stop_min_delta=10"], 3, "ckpt"),
    # keep_last=1 prunes, but the best checkpoint (step 2: this lr is far too high) is
    # kept; linear decay; neither interval divides max_steps; logging windows straddle
    # the checkpoints.
    "gpt-keep-best-linear": ("gpt-world", GPT + [
        "train.max_steps=7", "train.ckpt_every=2", "train.eval_every=3",
        "train.log_every=3", "train.keep_last=1", "train.schedule=linear", "train.lr=1.0",
        "train.min_lr=0.5", "train.warmup_steps=0", "train.grad_clip=null",
        "train.early_stop_patience=null"], 4, "ckpt"),
}


class Interrupted(Exception):
    pass


class InterruptAt:
    def __init__(self, step: int, when: str):
        self.step, self.when = step, when

    def on_checkpoint(self, step, path):
        if self.when == "ckpt" and step == self.step:
            raise Interrupted

    def on_step_end(self, step, metrics):
        if self.when == "step" and step == self.step:
            raise Interrupted


@pytest.fixture(autouse=True)
def _no_loss_png(monkeypatch):
    """No loss.png: these runs compare what training leaves (weights, optimizer, RNG and
    trainer state, metrics.jsonl, samples), never the picture drawn from metrics.jsonl,
    and drawing it after each of the ~40 short runs took 40% of this file's time."""
    monkeypatch.setattr("lmforge.train.trainer.plot_loss", lambda *a, **k: True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Prepared data by fingerprint, so that each tokenizer is trained once."""
    return {"root": tmp_path_factory.mktemp("prepared")}


def _recipe(name: str, sets: list[str], out: Path):
    return load_recipe(CONFIGS / f"{name}.yaml", TINY + sets + [f"run.out_dir={out}"])


def _pretrain(recipe, prepared, **kw):
    """pretrain() reusing prepared data (run/data + run/data.json) of the same fingerprint."""
    run = Path(recipe.run.out_dir)
    key = json.dumps(_data_fingerprint(recipe), sort_keys=True)
    if key in prepared and not (run / "data").exists():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copytree(prepared[key] / "data", run / "data")
        shutil.copy(prepared[key] / "data.json", run / "data.json")
    threads = torch.get_num_threads()
    try:
        result = pretrain(recipe, show_progress=False, log=lambda s: None, **kw)
    finally:
        torch.set_num_threads(threads)
    prepared.setdefault(key, run)
    return result


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "tok_per_s", "ex_per_s")} for r in rows]


def _assert_same(a, b, where: str) -> None:
    if isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype \
            and torch.equal(a, b), f"{where} differs"
    elif isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in b:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(got: Path, want: Path) -> None:
    names = [p.name for p in list_checkpoints(want)]
    assert [p.name for p in list_checkpoints(got)] == names
    a, b = got / "checkpoints" / names[-1], want / "checkpoints" / names[-1]
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert set(wa) == set(wb)
    for k in wb:
        assert torch.equal(wa[k], wb[k]), f"weights {k} differ"
    # AdamW state, the schedule, every RNG state and the objective's state (TBPTT).
    _assert_same(torch.load(a / "optimizer.pt", weights_only=True),
                 torch.load(b / "optimizer.pt", weights_only=True), "optimizer.pt")
    sa, sb = (json.loads((p / "trainer_state.json").read_text()) for p in (a, b))
    for s in (sa, sb):  # wall-clock time; checksums of files that name the run folder
        del s["elapsed"], s["sha256"]
    assert sa == sb
    assert _metrics(got) == _metrics(want)  # every loss, bit for bit (floats compared ==)
    for f in ("samples.txt",):
        assert (got / f).is_file() == (want / f).is_file()
        if (want / f).is_file():
            assert (got / f).read_text() == (want / f).read_text()


@pytest.mark.parametrize("case", list(CASES))
def test_interrupted_and_resumed_run_is_bit_identical(case, prepared, tmp_path):
    name, sets, at, when = CASES[case]
    want = tmp_path / "uninterrupted"
    got = tmp_path / "interrupted"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reference = _pretrain(_recipe(name, sets, want), prepared)
        with pytest.raises(Interrupted):
            _pretrain(_recipe(name, sets, got), prepared, callbacks=(InterruptAt(at, when),))
        assert list_checkpoints(got)[-1].name < f"step_{reference.train.steps:07d}"
        resumed = _pretrain(_recipe(name, sets, got), prepared, resume=True)
    assert not [w for w in caught if "resum" in str(w.message)], "resume warned"
    assert resumed.train.steps == reference.train.steps
    assert resumed.train.stopped_reason == reference.train.stopped_reason
    assert_same_run(got, want)


def test_early_stop_case_stops_early_and_keep_best_case_keeps_an_old_best(prepared, tmp_path):
    """The two trainer-option cases above exercise what they claim to."""
    name, sets, _, _ = CASES["gpt-early-stop"]
    result = _pretrain(_recipe(name, sets, tmp_path / "es"), prepared)
    assert result.train.stopped_reason == "early_stop" and result.train.steps == 4
    name, sets, _, _ = CASES["gpt-keep-best-linear"]
    result = _pretrain(_recipe(name, sets, tmp_path / "kb"), prepared)
    kept = [p.name for p in list_checkpoints(tmp_path / "kb")]
    assert len(kept) == 2 and kept[-1] == "step_0000007"
    assert result.train.best_checkpoint.name == kept[0]


@pytest.mark.parametrize("schedule,warns", [("cosine", True), ("constant", False)])
def test_resume_warns_when_a_new_max_steps_changes_past_learning_rates(
        schedule, warns, prepared, tmp_path):
    """max_steps sets the length of a decaying schedule: a run stopped at max_steps=4 and
    resumed with max_steps=6 took its first steps with other learning rates than a run
    to 6 steps, so it cannot match one; with a constant schedule it does."""
    sets = GPT + [f"train.schedule={schedule}", "train.warmup_steps=1", "train.ckpt_every=2"]
    want = tmp_path / "uninterrupted"
    got = tmp_path / "extended"
    _pretrain(_recipe("gpt-world", sets, want), prepared)
    _pretrain(_recipe("gpt-world", sets + ["train.max_steps=4"], got), prepared)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _pretrain(_recipe("gpt-world", sets, got), prepared, resume=True)
    msgs = [str(w.message) for w in caught if "resum" in str(w.message)]
    wb = load_file(str(want / "checkpoints/step_0000006/model.safetensors"))
    wa = load_file(str(got / "checkpoints/step_0000006/model.safetensors"))
    same = all(torch.equal(wa[k], wb[k]) for k in wb)
    if warns:
        assert len(msgs) == 1 and "max_steps: 4 -> 6" in msgs[0]
        assert "cosine learning-rate schedule" in msgs[0]
        assert not same
    else:
        assert not msgs
        assert same
