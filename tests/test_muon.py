"""Muon (``lmforge.train.muon``) against PyTorch's ``torch.optim.Muon``.

References: ``torch.optim.Muon(adjust_lr_fn="match_rms_adamw")``, which runs the same
update with its Newton-Schulz iteration in bf16 (lmforge's must then be bit for bit
equal), and the SVD, for what the iteration does to singular values.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.train.muon import Muon, MuonAdamW, muon_params, newton_schulz
from lmforge.train.optim import build_optimizer


@pytest.mark.parametrize("shape, nesterov", [((48, 80), True), ((96, 32), False),
                                             ((64, 64), True)])
def test_equals_torch_muon_with_bf16_iteration(shape, nesterov):
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(*shape))
    ref = copy.deepcopy(ours)
    a = Muon([ours], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov,
             ns_dtype=torch.bfloat16)
    b = torch.optim.Muon([ref], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov,
                         adjust_lr_fn="match_rms_adamw")
    for _ in range(6):
        g = torch.randn(*shape)
        ours.grad, ref.grad = g.clone(), g.clone()
        a.step()
        b.step()
    assert torch.equal(ours, ref)


def test_newton_schulz_pushes_singular_values_towards_one():
    torch.manual_seed(0)
    for shape in ((64, 192), (192, 64), (128, 512)):
        g = torch.randn(*shape) * torch.logspace(0, 1, shape[1])  # columns 1x to 10x
        before = torch.linalg.svdvals(g)
        assert before.max() / before.min() > 4  # far from orthogonal
        sv = torch.linalg.svdvals(newton_schulz(g))
        assert sv.min() > 0.6 and sv.max() < 1.25, (shape, sv.min(), sv.max())
        # bf16 and fp32 iterations agree to bf16 precision
        diff = newton_schulz(g, dtype=torch.bfloat16) - newton_schulz(g)
        assert diff.norm() / newton_schulz(g).norm() < 0.03


def test_batched_iteration_equals_one_matrix_at_a_time():
    torch.manual_seed(0)
    stack = torch.randn(4, 48, 80)
    batched = newton_schulz(stack)
    for k in range(4):
        torch.testing.assert_close(batched[k], newton_schulz(stack[k]), rtol=1e-4,
                                   atol=1e-5)


def test_muon_rejects_vectors():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_which_parameters_are_hidden_matrices():
    from lmforge.models.gpt import GPT, GPTConfig

    tied = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, d_model=32, max_seq_len=16,
                         style="llama"))
    hidden, rest = muon_params(tied)
    names = {id(p): n for n, p in tied.named_parameters()}
    assert all(p.dim() == 2 for p in hidden)
    assert {names[id(p)].split(".")[-2] for p in hidden} >= {"qkv", "proj"}
    # the embedding and the output layer stay with AdamW, and the norm gains
    assert {names[id(p)] for p in rest if p.dim() == 2} == {"wte.weight", "lm_head.weight"}
    assert sum(p.dim() == 1 for p in rest) == 5
    gpt2 = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=16))
    hidden, rest = muon_params(gpt2)  # GPT-2 style: the head is the embedding (tied)
    names = {id(p): n for n, p in gpt2.named_parameters()}
    assert {names[id(p)] for p in rest if p.dim() == 2} == {"wte.weight", "wpe.weight"}
    assert len(hidden) + len(rest) == len(list(gpt2.parameters())) == len(names)


def test_muon_needs_hidden_matrices():
    from lmforge.errors import ConfigError

    model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10))
    hidden, rest = muon_params(model)  # no stacked blocks: an embedding and a head
    assert hidden == [] and len(rest) == 3
    with pytest.raises(ConfigError, match="muon needs hidden weight matrices"):
        build_optimizer(model, TrainConfig(optimizer="muon"))


def test_build_optimizer_muon_state_round_trip():
    from lmforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=16))
    cfg = TrainConfig(optimizer="muon", lr=1e-2)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, MuonAdamW)
    n_opt = sum(len(g["params"]) for g in opt.param_groups)
    assert n_opt == len(list(model.parameters()))
    ids = torch.randint(0, 64, (2, 16))
    for _ in range(3):
        loss = model(ids).float().logsumexp(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    state = opt.state_dict()
    again = build_optimizer(model, cfg)
    again.load_state_dict(state)
    buf = next(iter(again.muon.state.values()))["momentum_buffer"]
    assert torch.equal(buf, next(iter(opt.muon.state.values()))["momentum_buffer"])
    adamw_only = build_optimizer(model, TrainConfig())
    with pytest.raises(ValueError, match="Muon"):
        again.load_state_dict(adamw_only.state_dict())


def test_muon_alone_when_only_hidden_matrices_train():
    """LoRA freezes everything but adapters that are all hidden matrices: no AdamW side,
    until something else (an objective's own parameters) asks for one."""
    from lmforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=16))
    hidden, _ = muon_params(model)
    for p in model.parameters():
        p.requires_grad_(any(p is h for h in hidden))
    cfg = TrainConfig(optimizer="muon", lr=1e-2)
    opt = build_optimizer(model, cfg)
    assert opt.adamw is None
    assert sum(len(g["params"]) for g in opt.param_groups) == len(hidden)
    before = [h.detach().clone() for h in hidden]
    model(torch.randint(0, 64, (2, 16))).float().logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad()
    assert all(not torch.equal(b, h) for b, h in zip(before, hidden, strict=True))
    again = build_optimizer(model, cfg)
    again.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="Muon"):
        build_optimizer(GPT(model.config), cfg).load_state_dict(opt.state_dict())
    extra = torch.nn.Parameter(torch.zeros(3))
    opt.add_adamw_groups([{"params": [extra], "weight_decay": 0.0, "name": "extra"}], cfg)
    extra.grad = torch.ones(3)
    opt.step()
    assert opt.param_groups[-1]["name"] == "extra" and extra.detach().lt(0).all()


def test_ns_steps_option_sets_the_iterations_of_each_update():
    """``train.muon_ns_steps: 3``: a first step (momentum ``(1 - mu) g``, Nesterov) moves
    a hidden matrix by ``lr * 0.2 sqrt(max(m, n)) * NS_3(M)``, not ``NS_5``."""
    from lmforge.models.gpt import GPT, GPTConfig

    def first_update(steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=16))
        opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=1e-2, weight_decay=0.0,
                                                 muon_ns_steps=steps))
        weight = muon_params(model)[0][0]
        before = weight.detach().clone()
        model(torch.randint(0, 64, (2, 16))).float().logsumexp(-1).mean().backward()
        grad = weight.grad.clone()
        opt.step()
        return weight.detach() - before, grad, before

    mu = TrainConfig().muon_momentum
    for steps in (3, 5):
        moved, grad, w = first_update(steps)
        nesterov = (1 - mu) * grad * (1 + mu)  # g.lerp(buf, mu) with buf = (1 - mu) g
        want = -1e-2 * 0.2 * max(w.shape) ** 0.5 * newton_schulz(nesterov, steps)
        torch.testing.assert_close(moved, want, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(first_update(3)[0], first_update(5)[0], atol=1e-5)
