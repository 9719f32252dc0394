"""Low-rank factorisation (``lmforge.compress.lowrank``) against the SVD's own facts.

References: a full-rank factorisation reproduces the layer; a truncated one leaves
exactly the discarded singular values (Eckart-Young, ``||W - W_r||_F^2 = sum_{i>r}
σ_i^2``) with ``Σ^{1/2}`` in each factor; the energy rule picks the smallest rank; the
model's parameter count moves as reported; folders round-trip without an SVD.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lmforge.compress.lowrank import LowRankLinear, energy_rank, factorize
from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig


def linear_with_spectrum(sigma: list[float], n: int = 32, k: int = 48) -> torch.nn.Linear:
    """``nn.Linear(k, n)`` whose weight has exactly the singular values ``sigma``."""
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(n, len(sigma), generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(k, len(sigma), generator=gen, dtype=torch.float64))
    lin = torch.nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(u @ torch.diag(torch.tensor(sigma, dtype=torch.float64)) @ v.T)
    return lin


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=80, n_layer=2, n_head=2, d_model=64, max_seq_len=32)).eval()


def test_full_rank_reproduces_the_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 32)
    layer = LowRankLinear.from_linear(lin, 32)
    x = torch.randn(5, 48)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight_product(), lin.weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rank", [1, 5, 20])
def test_truncation_error_is_the_discarded_singular_values(rank):
    torch.manual_seed(1)
    lin = torch.nn.Linear(48, 32)
    sigma = torch.linalg.svdvals(lin.weight.double())
    layer = LowRankLinear.from_linear(lin, rank)
    err2 = ((lin.weight.double() - layer.weight_product().double()) ** 2).sum()
    torch.testing.assert_close(err2, (sigma[rank:] ** 2).sum(), rtol=1e-4, atol=1e-9)
    # Σ^{1/2} in each factor: A A^T = B^T B = Σ_r
    a, b = layer.first.weight.double(), layer.second.weight.double()
    torch.testing.assert_close(a @ a.T, torch.diag(sigma[:rank]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.T @ b, torch.diag(sigma[:rank]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.second.bias, lin.bias)


def test_energy_picks_the_smallest_rank():
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)  # σ² = 16, 9, 4, 1 of 30
    assert energy_rank(sigma, 16 / 30) == 1
    assert energy_rank(sigma, 16 / 30 + 1e-6) == 2
    assert energy_rank(sigma, 25 / 30) == 2
    assert energy_rank(sigma, 0.9) == 3
    assert energy_rank(sigma, 1.0) == 4
    model = torch.nn.Sequential(linear_with_spectrum([4.0, 3.0, 2.0, 1.0] + [0.0] * 28))
    report = factorize(model, energy=0.9)
    assert report.layers[0]["rank"] == 3 and isinstance(model[0], LowRankLinear)
    assert report.layers[0]["energy"] == pytest.approx(29 / 30)
    assert report.layers[0]["relative_error"] == pytest.approx((1 / 30) ** 0.5)


def test_factorize_reports_what_it_did_and_the_parameters():
    """Rank 8 everywhere on a GPT-2-style model: the tied head and a layer where rank
    would not save (attn.proj with 40 via the map) are kept and say why; the model's
    parameter count drops by exactly the reported difference."""
    model = tiny_gpt()
    ref = copy.deepcopy(model)
    before = sum(p.numel() for p in model.parameters())
    report = factorize(model, rank={"attn.proj": 40, "*": 8})
    rows = {r["layer"]: r for r in report.layers}
    assert rows["lm_head"]["result"].startswith("kept: its weight is shared")
    assert rows["blocks.0.attn.proj"]["rank"] == 40
    assert rows["blocks.0.attn.proj"]["result"] == "kept: r(K+N) = 5,120 >= KN = 4,096"
    assert rows["blocks.1.mlp.up"]["result"] == "factorized"
    assert isinstance(model.blocks[1].mlp.up, LowRankLinear)
    assert isinstance(model.blocks[0].attn.proj, torch.nn.Linear)
    after = sum(p.numel() for p in model.parameters())
    assert (report.params_before, report.params_after) == (before, after)
    saved = sum(r["params_before"] - r["params_after"] for r in report.layers)
    assert before - after == saved == sum(
        r["out_features"] * r["in_features"] - 8 * (r["out_features"] + r["in_features"])
        for r in report.layers if r["result"] == "factorized")
    assert "factorized" in report.table() and f"{before:,} -> {after:,}" in report.table()
    # each factorised layer applies its rank-8 truncation
    for name, row in rows.items():
        if row["result"] == "factorized":
            w = ref.get_submodule(name).weight.double()
            w_r = model.get_submodule(name).weight_product().double()
            rel = ((w - w_r).norm() / w.norm()).item()
            assert rel == pytest.approx(row["relative_error"], rel=1e-4)


def test_bad_ranks_and_energies_name_the_problem():
    model = tiny_gpt()
    with pytest.raises(ConfigError, match=r"'blocks.0.attn.proj' is outside \[1, 64\]"):
        factorize(model, rank={"proj": 65})
    with pytest.raises(ConfigError, match=r"rank 0 for layer 'blocks.0.attn.qkv'"):
        factorize(model, rank=0)
    for energy in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"energy must be in \(0, 1\]"):
            factorize(model, energy=energy)
    with pytest.raises(ConfigError, match="exactly one of rank"):
        factorize(model, rank=4, energy=0.9)
    with pytest.raises(ConfigError, match="exactly one of rank"):
        factorize(model)
    with pytest.raises(ConfigError, match="'atn.qkv' names no linear layer"):
        factorize(model, rank={"atn.qkv": 4})
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())


def test_folder_round_trip_without_svd(tmp_path, monkeypatch):
    import lmforge.compress.lowrank as lowrank
    from lmforge.compress.structure import KINDS
    from lmforge.hub import load_pretrained
    from lmforge.io import read_json

    model = tiny_gpt()
    factorize(model, energy=0.8, skip=["lm_head"])
    ids = torch.randint(0, 80, (2, 9))
    with torch.inference_mode():
        before = model(ids)
    model.save_pretrained(tmp_path / "lowrank")
    modules = read_json(tmp_path / "lowrank" / "lmforge.json")["modules"]
    assert modules["blocks.0.mlp.up"]["kind"] == "lowrank" and "lowrank" in KINDS
    assert modules["blocks.0.mlp.up"]["rank"] == model.blocks[0].mlp.up.rank

    def no_svd(*_a, **_k):
        raise AssertionError("loading must not factorise again")

    monkeypatch.setattr(lowrank, "svd", no_svd)
    loaded, _ = load_pretrained(tmp_path / "lowrank")
    with torch.inference_mode():
        assert torch.equal(loaded(ids), before)
