"""AdamW parameter groups, LR schedules, clipping and gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import LRSchedule, Trainer, build_optimizer, param_groups


@pytest.fixture(autouse=True)
def _restore_threads():
    """The trainer sets torch's thread count (cfg.threads); give other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=32, n_layer=2, n_head=2, d_model=32, max_seq_len=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_param_groups_decay_matrices_only(style):
    model = tiny_gpt(style=style)
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    assert groups["decay"]["weight_decay"] == 0.1
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in groups["decay"]["params"])
    assert all(p.dim() == 1 for p in groups["no_decay"]["params"])
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # tied: once
    # Embeddings decay (dim 2); norm gains and biases do not.
    decayed = {id(p) for p in groups["decay"]["params"]}
    assert id(model.wte.weight) in decayed
    assert id(model.norm_f.weight) not in decayed


def test_build_optimizer_uses_a_fast_adamw():
    opt = build_optimizer(tiny_gpt(), TrainConfig(lr=1e-3, beta1=0.8, beta2=0.9, eps=1e-7))
    assert isinstance(opt, torch.optim.AdamW)
    d = opt.defaults
    assert d["fused"] or d["foreach"]
    assert d["betas"] == (0.8, 0.9) and d["eps"] == 1e-7


def test_cosine_schedule_values():
    s = LRSchedule(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110, kind="cosine")
    assert [s(i) for i in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert s(10) == pytest.approx(1.0)  # progress 0
    assert s(60) == pytest.approx(0.55)  # progress 1/2: min + (lr - min) / 2
    assert s(35) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.25)))
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    lrs = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # monotone decay


def test_linear_and_constant_schedules():
    lin = LRSchedule(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=100, kind="linear")
    assert [lin(i) for i in (0, 25, 50, 100)] == pytest.approx([1.0, 0.75, 0.5, 0.0])
    const = LRSchedule(lr=0.3, min_lr=0.0, warmup_steps=3, max_steps=100, kind="constant")
    assert [const(i) for i in (0, 1, 2, 3, 99)] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert LRSchedule.from_config(TrainConfig(schedule="linear")).kind == "linear"


class FixedBatches:
    """Micro-batch ``micro`` of every step is rows [micro*b, (micro+1)*b) of one batch."""

    def __init__(self, x, y, b):
        self.x, self.y, self.b = x, y, b

    def batch(self, step, micro, rng):
        sl = slice(micro * self.b, (micro + 1) * self.b)
        return {"input_ids": self.x[sl], "labels": self.y[sl]}

    def eval_batches(self):
        return []


def _grads(tmp_path, accum, b, x, y):
    cfg = TrainConfig(batch_size=b, block_size=16, grad_accum=accum, precision="fp32",
                      device="cpu", grad_clip=None, threads=1)
    trainer = Trainer(tiny_gpt(), cfg, FixedBatches(x, y, b), None, tmp_path / f"r{accum}",
                      seed=0, show_progress=False)
    loss, n, _ = trainer.forward_backward(0)
    return loss, n, {k: p.grad.clone() for k, p in trainer.model.named_parameters()}


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 32, (8, 16), generator=g)
    y = torch.randint(0, 32, (8, 16), generator=g)
    y[0, :5] = -100  # uneven token counts: the mean must be token-weighted
    loss1, n1, g1 = _grads(tmp_path, accum=1, b=8, x=x, y=y)
    loss2, n2, g2 = _grads(tmp_path, accum=2, b=4, x=x, y=y)
    assert n1 == n2 == 8 * 16 - 5
    assert float(loss2) == pytest.approx(float(loss1), rel=1e-6)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=1e-7)


def test_grad_clipping_bounds_the_global_norm(tmp_path):
    x = torch.randint(0, 32, (4, 16))
    cfg = TrainConfig(batch_size=4, block_size=16, precision="fp32", device="cpu",
                      grad_clip=1e-3, threads=1)
    trainer = Trainer(tiny_gpt(), cfg, FixedBatches(x, x, 4), None, tmp_path / "r",
                      seed=0, show_progress=False)
    trainer.forward_backward(0)
    before = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    reported = trainer._grad_norm()
    after = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert float(reported) == pytest.approx(float(before), rel=1e-5)  # pre-clip norm
    assert float(before) > 1e-3
    assert float(after) == pytest.approx(1e-3, rel=1e-3)
