"""DP-SGD through Opacus (lmforge.privacy.dp) and the membership-inference attack
(lmforge.privacy.membership): per-example gradients of lmforge's layers against a loop of
single-example backward passes, ε reported by a tiny fine-tune and a tiny pretraining
run against Opacus' own accountant, the config's one-line errors (exit 2), the δ
warning, and the attack's AUC where the answer is known."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fakes import TEXT, assert_user_error, run_cli
from test_finetune import _recipe, _sentiment, _write_jsonl

from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.privacy.dp import (
    DPTraining,
    PoissonSource,
    check_supported,
    lm_window_source,
    missing_per_sample,
    register_lmforge_samplers,
)
from lmforge.privacy.membership import attack_scores, membership_auc, yeom_advantage
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune
from lmforge.tasks.model import TaskModel, TaskModelConfig
from lmforge.train.config import TrainConfig

pytest.importorskip("opacus")

B, T, V = 4, 9, 40


def _per_sample_vs_loop(model: torch.nn.Module, batch: dict, loss_fn) -> float:
    """Largest |Opacus per-example gradient - gradient of that example alone|."""
    from opacus import GradSampleModule

    register_lmforge_samplers()
    params = [p for p in model.parameters() if p.requires_grad]
    gsm = GradSampleModule(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss_fn(gsm, batch).backward()
    assert not missing_per_sample(model)
    got = [p.new_zeros((B, *p.shape)) if p.grad_sample is None  # unused (e.g. a pooler)
           else p.grad_sample.detach().clone() for p in params]
    gsm._close()
    worst = 0.0
    for i in range(B):
        one = {k: v[i: i + 1] for k, v in batch.items()}
        ref = torch.autograd.grad(loss_fn(model, one), params, allow_unused=True)
        for g, r in zip(got, ref, strict=True):
            r = torch.zeros_like(g[i]) if r is None else r
            worst = max(worst, float((g[i] - r).abs().max()))
    return worst


def _task_batch() -> dict:
    torch.manual_seed(1)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, 6:] = 0
    mask[2, 4:] = 0
    return {"input_ids": torch.randint(3, V, (B, T)) * mask, "attention_mask": mask,
            "labels": torch.tensor([0, 2, 1, 2])}


@pytest.mark.parametrize("encoder, cfg, pooling", [
    ("textcnn", {"d_emb": 8, "n_filters": 4, "kernel_sizes": [2, 3]}, "max"),
    ("bilstm", {"d_emb": 8, "hidden": 6, "dropout": 0.0}, "attention"),
    ("bert", {"d_model": 16, "n_layer": 1, "n_head": 2, "d_ff": 32, "max_position": 16,
              "dropout": 0.0}, "mean"),
])
def test_per_sample_gradients_of_task_models_match_a_loop(encoder, cfg, pooling):
    torch.manual_seed(0)
    model = TaskModel(TaskModelConfig("classify", ["a", "b", "c"], encoder,
                                      {"vocab_size": V, **cfg}, pooling=pooling,
                                      dropout=0.0))
    err = _per_sample_vs_loop(model, _task_batch(),
                              lambda m, b: F.cross_entropy(m(b), b["labels"]))
    assert err < 1e-5


@pytest.mark.parametrize("norm, tied, bias", [("rmsnorm", True, False),
                                              ("layernorm", False, True),
                                              ("layernorm", True, False)])
def test_per_sample_gradients_of_a_gpt_match_a_loop(norm, tied, bias):
    """Tied embeddings (wte used twice), RMSNorm, LayerNorm without bias, RoPE and fused
    attention."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, d_model=16, n_layer=2, n_head=2, max_seq_len=16,
                          norm=norm, tie_embeddings=tied, dropout=0.0, pos="rope",
                          bias=bias))
    x = torch.randint(0, V, (B, T + 1))
    err = _per_sample_vs_loop(
        model, {"input_ids": x[:, :-1], "labels": x[:, 1:]},
        lambda m, b: F.cross_entropy(m(b["input_ids"]).reshape(-1, V),
                                     b["labels"].reshape(-1)))
    assert err < 1e-5


def test_per_sample_gradients_of_a_lora_model_match_a_loop():
    """LoRA adapters (only lora_A/lora_B and the head train) under Opacus' hooks."""
    from lmforge.nn.lora import LoraConfig, apply_lora

    torch.manual_seed(0)
    model = TaskModel(TaskModelConfig("classify", ["a", "b", "c"], "bert", {
        "vocab_size": V, "d_model": 16, "n_layer": 1, "n_head": 2, "d_ff": 32,
        "max_position": 16, "dropout": 0.0}, pooling="mean", dropout=0.0))
    apply_lora(model, LoraConfig(r=2, target_modules="all-linear", dropout=0.0))
    for p in model.parameters():  # B starts at zero: move it so A's gradient is not 0
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)
    err = _per_sample_vs_loop(model, _task_batch(),
                              lambda m, b: F.cross_entropy(m(b), b["labels"]))
    assert err < 1e-5


def test_unsupported_layers_are_named():
    bn = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    with pytest.raises(ConfigError, match="BatchNorm"):
        check_supported(bn.train())
    # Parameters read outside their module's forward (here the CRF's, by crf_nll called
    # directly rather than through the module) get no per-example gradient
    from opacus import GradSampleModule

    from lmforge.nn.crf import crf_nll

    tagger = TaskModel(TaskModelConfig("tag", ["O", "B-X", "I-X"], "textcnn",
                                       {"vocab_size": V, "d_emb": 8, "n_filters": 4,
                                        "kernel_sizes": [3]}, head="crf", dropout=0.0))
    gsm = GradSampleModule(tagger)
    batch = {"input_ids": torch.randint(3, V, (2, 5)),
             "attention_mask": torch.ones(2, 5, dtype=torch.long),
             "word_index": torch.arange(5).repeat(2, 1),
             "word_mask": torch.ones(2, 5, dtype=torch.bool)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crf = tagger.crf
        crf_nll(gsm(batch), torch.zeros(2, 5, dtype=torch.long), batch["word_mask"],
                crf.start_transitions, crf.end_transitions, crf.transitions).mean().backward()
    assert missing_per_sample(tagger) == ["crf.start_transitions (CRF)",
                                          "crf.end_transitions (CRF)",
                                          "crf.transitions (CRF)"]


def test_poisson_source_keeps_each_example_with_probability_q():
    src = PoissonSource.over(list(range(200)), lambda ex: ex)
    src.sample_rate = 0.1
    counts = np.zeros(200)
    for s in range(300):
        idx = src.indices(np.random.default_rng([0, s, 0]))
        counts[idx] += 1
        assert src.batch(s, 0, np.random.default_rng([0, s, 0])) == idx.tolist()
    assert abs(counts.mean() / 300 - 0.1) < 0.005  # 60,000 Bernoulli(0.1) draws


def test_lm_windows_are_the_sequential_windows_of_every_shard(tmp_path):
    from lmforge.data.shards import ShardWriter, write_meta
    from lmforge.train.sources import LMBatchSource

    w = ShardWriter(tmp_path, "train", np.dtype(np.uint16), shard_tokens=50)
    for d in range(7):
        w.add_document(list(range(d * 20, d * 20 + 19)))
    write_meta(tmp_path, dtype=np.dtype(np.uint16), vocab_size=200,
               splits={"train": w.close()})
    lm = LMBatchSource(tmp_path, batch_size=2, block_size=8)
    src = lm_window_source(lm)
    want = torch.cat([x for x, _ in lm.shards.sequential(1, 8)])
    got = src.fetch(np.arange(src.n))
    assert len(lm.shards.arrays) > 1 and torch.equal(got["input_ids"], want)
    assert torch.equal(got["labels"][:, :-1], got["input_ids"][:, 1:])


def _accountant_epsilon(kind: str, sigma: float, q: float, steps: int, delta: float):
    from opacus.accountants import create_accountant

    acc = create_accountant(kind)
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(delta=delta)


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> tuple[str, str, str]:
    d = tmp_path_factory.mktemp("sent")
    return tuple(_write_jsonl(d / f"{s}.jsonl", _sentiment(n, i))
                 for i, (s, n) in enumerate([("train", 300), ("val", 40), ("test", 40)]))


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_tiny_finetune_reports_the_accountants_epsilon(tmp_path, sentiment, accountant):
    raw = _recipe(tmp_path, *sentiment, steps=20, train={
        "eval_every": 10, "ckpt_every": 20, "threads": 1,
        "privacy": {"noise_multiplier": 1.1, "delta": 1e-3, "accountant": accountant}})
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    p = res.results["privacy"]
    q = 1 / math.ceil(300 / 16)  # Opacus' DPDataLoader rate for N=300, batch 16
    assert p["sample_rate"] == pytest.approx(q) and p["steps"] == 20
    assert p["epsilon"] == pytest.approx(_accountant_epsilon(accountant, 1.1, q, 20, 1e-3))
    run = tmp_path / "run"
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "epsilon" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert 0 < evals[0]["epsilon"] < evals[1]["epsilon"] == pytest.approx(p["epsilon"])
    assert json.loads((run / "lmforge.json").read_text())["privacy"]["epsilon"] == \
        pytest.approx(p["epsilon"])
    ckpt = json.loads((Path(res.results["best_checkpoint"]) / "lmforge.json").read_text())
    assert ckpt["training"]["privacy"]["steps"] == 20


def test_resumed_private_run_equals_an_uninterrupted_one(tmp_path, sentiment):
    """Poisson draws come from (seed, step), the noise from the saved RNG state and the
    accountant restarts from the steps taken."""
    from lmforge.tasks import load_task_model

    common = {"schedule": "constant", "warmup_steps": 0, "eval_every": 10,
              "ckpt_every": 10, "keep_last": 3, "threads": 1,
              "privacy": {"noise_multiplier": 1.0, "delta": 1e-3}}
    a = _recipe(tmp_path / "a", *sentiment, steps=20, train=common)
    ra = finetune(build_finetune_recipe(a), show_progress=False, log=lambda m: None)
    b = _recipe(tmp_path / "b", *sentiment, steps=10, train=common)
    finetune(build_finetune_recipe(b), show_progress=False, log=lambda m: None)
    b["train"]["max_steps"] = 20
    rb = finetune(build_finetune_recipe(b), resume=True, show_progress=False,
                  log=lambda m: None)
    assert rb.results["privacy"] == ra.results["privacy"]
    wa = load_task_model(tmp_path / "a/run/checkpoints/step_0000020").model.state_dict()
    wb = load_task_model(tmp_path / "b/run/checkpoints/step_0000020").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_missing_opacus_names_the_extra(monkeypatch):
    from lmforge.privacy.dp import require_opacus

    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus -> ImportError
    with pytest.raises(ConfigError, match=r"'privacy' extra: pip install 'lmforge\[privacy\]'"):
        require_opacus()


def test_target_epsilon_is_spent_by_max_steps(tmp_path, sentiment):
    raw = _recipe(tmp_path, *sentiment, steps=15, train={
        "eval_every": 15, "ckpt_every": 15, "threads": 1,
        "privacy": {"target_epsilon": 2.0, "delta": 1e-3}})
    p = finetune(build_finetune_recipe(raw), show_progress=False,
                 log=lambda m: None).results["privacy"]
    assert 1.9 < p["epsilon"] <= 2.0 and p["steps"] == 15


def tiny_dp_pretraining(folder) -> dict:
    """``--set`` values of a 3-step DP-SGD ``lmforge pretrain quickstart`` of a 1-layer
    char GPT (σ = 1, δ = 1e-4) on 200 distinct random lines written to ``folder``."""
    corpus = folder / "corpus.txt"
    rng = np.random.default_rng(0)  # distinct lines: prepare drops duplicates
    words = TEXT.split()
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(200)),
                      encoding="utf-8")
    return {"train.max_steps": 3, "data.corpus": "null", "data.inputs": f"[{corpus}]",
            "tokenizer.kind": "char", "tokenizer.vocab_size": 60, "model.n_layer": 1,
            "model.d_model": 16, "model.n_head": 2, "model.max_seq_len": 16,
            "train.batch_size": 4, "train.block_size": 16, "train.eval_every": 3,
            "train.ckpt_every": 3, "train.eval_batches": 1, "train.threads": 1,
            "train.optimizer": "adamw", "train.privacy.noise_multiplier": 1.0,
            "train.privacy.delta": 1e-4}


def test_pretraining_with_privacy_writes_epsilon_to_the_run(tmp_path):
    sets = {**tiny_dp_pretraining(tmp_path), "run.out_dir": tmp_path / "run"}
    threads = torch.get_num_threads()
    code, _, _ = run_cli(["pretrain", "quickstart", "--no-progress",
                          *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]])
    torch.set_num_threads(threads)
    assert code == 0
    p = json.loads((tmp_path / "run" / "lmforge.json").read_text())["privacy"]
    assert p["steps"] == 3 and p["epsilon"] == pytest.approx(
        _accountant_epsilon("prv", 1.0, p["sample_rate"], 3, 1e-4))


@pytest.mark.parametrize("privacy, fragment", [
    ("{target_epsilon: -1}", "target_epsilon: input should be greater than 0"),
    ("{target_epsilon: 0}", "target_epsilon: input should be greater than 0"),
    ("{target_epsilon: 3, noise_multiplier: 1}", "exactly one of train.privacy"),
    ("{delta: 0.001}", "exactly one of train.privacy"),
])
def test_bad_privacy_settings_exit_2(tmp_path, capsys, privacy, fragment):
    assert_user_error(["finetune", "classify-topic", "--out", str(tmp_path / "r"), "--set",
                       f"train.privacy={privacy}"], capsys, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("train, fragment", [
    ({"grad_accum": 2}, "grad_accum must be 1"),
    ({"grad_clip": 1.0}, "remove train.grad_clip"),
    ({"compile": True}, "train.compile"),
    ({"precision": "bf16"}, "fp32"),
    ({"distributed": "ddp"}, "one process"),
    ({"optimizer": "muon"}, "optimizer adamw"),
])
def test_options_dp_cannot_combine_with_are_refused(train, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig(**train, privacy={"noise_multiplier": 1.0})


def test_augmentation_is_refused_with_privacy(tmp_path, sentiment):
    raw = _recipe(tmp_path, *sentiment, data={"augment": 1},
                  train={"privacy": {"noise_multiplier": 1.0}})
    with pytest.raises(ConfigError, match="data.augment"):
        build_finetune_recipe(raw)


def test_delta_not_below_one_over_n_warns_with_both_numbers():
    from lmforge.train.privacy_config import PrivacyConfig

    def attach(delta: float) -> DPTraining:
        model = torch.nn.Linear(3, 2)
        src = PoissonSource.over(list(range(50)), lambda ex: ex)
        return DPTraining(PrivacyConfig(noise_multiplier=1.0, delta=delta), model,
                          torch.optim.AdamW(model.parameters()), src, 10, 5)

    with pytest.warns(UserWarning, match=r"delta=0\.05 .*1/N = 0\.02 \(N = 50"):
        attach(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        attach(0.01)


def _mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a member > score of a non-member) + P(tie) / 2, by counting pairs."""
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_attack_auc_where_the_answer_is_known():
    members, others = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0, 4.0])
    assert membership_auc(members, others) == 1.0  # separable: lower loss = member
    assert membership_auc(others, members) == 0.0
    same = np.array([0.5, 0.7, 0.9])
    assert membership_auc(same, same) == 0.5  # identical losses: guessing
    rng = np.random.default_rng(0)
    m, n = rng.exponential(0.5, 300), rng.exponential(1.0, 200).round(1)
    assert membership_auc(m, n) == pytest.approx(
        _mann_whitney_auc(attack_scores(m), attack_scores(n)))
    assert yeom_advantage(members, others) == pytest.approx(2 / 3)  # τ = 0.2


@pytest.mark.slow
def test_overfit_model_leaks_membership_and_dp_hides_it(tmp_path):
    """The attack at a small size: 200 members, 200 non-members, 300 steps."""
    from lmforge.privacy.membership import classification_losses
    from lmforge.tasks.datasets import load_splits

    def auc(privacy: dict | None, out: Path) -> float:
        train = {"max_steps": 300, "batch_size": 32, "lr": 3e-3, "min_lr": 0.0,
                 "weight_decay": 0.0, "eval_every": 300, "ckpt_every": 300, "threads": 1}
        if privacy:
            train["privacy"] = privacy
        rec = build_finetune_recipe({
            "run": {"out_dir": str(out), "seed": 0},
            "data": {"world": "sentiment", "max_length": 64,
                     "world_sizes": {"train": 200, "val": 50, "test": 200}},
            "backbone": {"encoder": "textcnn"}, "head": {"pooling": "max", "dropout": 0.0},
            "finetune": {"metric": "accuracy"}, "train": train})
        res = finetune(rec, show_progress=False, log=lambda m: None)
        splits = load_splits(rec)[0]
        m, t = res.predictor.model, res.predictor.tokenizer
        return membership_auc(classification_losses(m, t, splits["train"]),
                              classification_losses(m, t, splits["test"]))

    assert auc(None, tmp_path / "plain") > 0.65
    assert auc({"target_epsilon": 1.0, "delta": 1e-4}, tmp_path / "dp") <= 0.55
