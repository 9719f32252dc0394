"""Per-layer sensitivity (``lmforge.compress.sensitivity``): a layer made fragile on
purpose (outlier weights that widen every int4 group's step) must come out on top, and
the model must be left exactly as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmforge.compress.int4 import Int4Linear
from lmforge.compress.sensitivity import layer_sensitivity, sensitivity_table
from lmforge.models.gpt import GPT, GPTConfig

FRAGILE = "blocks.1.mlp.up"


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, d_model=64, d_ff=128,
                          max_seq_len=32, style="llama")).eval()
    with torch.no_grad():
        model.get_submodule(FRAGILE).weight[:, ::32] = 2.0  # one outlier per int4 group
    ids = torch.randint(0, 64, (4, 16))
    with torch.no_grad():
        ref = F.log_softmax(model(ids), -1)

    def kl_to_fp32(m) -> float:
        """KL(fp32 model || m) per token: 0 for the unchanged model."""
        logp = F.log_softmax(m(ids), -1)
        return float((ref.exp() * (ref - logp)).sum(-1).mean())

    return model, ids, kl_to_fp32


def int4(linear):
    return Int4Linear.from_linear(linear, 32)


def test_the_fragile_layer_comes_first_and_the_model_is_restored(setup):
    model, ids, kl = setup
    modules = dict(model.named_modules())
    with torch.no_grad():
        before = model(ids)
    rows = layer_sensitivity(model, int4, kl)
    assert [r["layer"] for r in rows][0] == FRAGILE
    assert len(rows) == 2 * 4 + 1  # qkv, proj, up, down per block; the head
    assert rows[0]["delta"] > 3 * rows[1]["delta"] > 0
    assert all(a["delta"] >= b["delta"] for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0]["params"] == 64 * 256 and rows[0]["score"] == pytest.approx(rows[0]["delta"])
    assert all(modules[n] is m for n, m in model.named_modules())  # the very same layers
    with torch.no_grad():
        assert torch.equal(model(ids), before)
    table = sensitivity_table(rows).splitlines()
    assert table[0].split() == ["layer", "params", "score", "delta"]
    assert table[2].split()[0] == FRAGILE and len(table) == 2 + len(rows)


def test_higher_is_better_and_patterns(setup):
    model, _, kl = setup
    rows = layer_sensitivity(model, int4, lambda m: -kl(m), include=["mlp.*"], skip=["down"],
                             higher_is_better=True)
    assert [r["layer"] for r in rows][0] == FRAGILE
    assert {r["layer"] for r in rows} == {"blocks.0.mlp.up", FRAGILE}
    assert rows[0]["delta"] > 0 and rows[0]["score"] < 0


def test_a_failing_score_still_restores_the_layer(setup):
    model, _, kl = setup
    calls = []

    def flaky(m) -> float:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("scorer broke")
        return kl(m)

    model.train()
    with pytest.raises(RuntimeError, match="scorer broke"):
        layer_sensitivity(model, int4, flaky)
    assert not any(isinstance(m, Int4Linear) for m in model.modules())
    assert model.training  # the mode is put back too
