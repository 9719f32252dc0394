"""Unstructured magnitude pruning: masks against torch.nn.utils.prune, the cubic schedule,
masks that hold through Trainer steps and a resume, and the sparse sizes and file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as torch_prune

from lmforge.compress.prune import (
    PruningCallback,
    SparsitySchedule,
    apply_masks,
    magnitude_masks,
    prunable_linears,
    prune_magnitude,
    sparsity_report,
)
from lmforge.compress.sparse_format import (
    dense_bytes,
    encoded_bytes,
    load_sparse,
    save_sparse,
    sparse_bytes,
)
from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import Callback, TrainConfig, Trainer

VOCAB = 40


def tiny_gpt(style: str = "gpt2", seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, style=style, n_layer=2, n_head=2, d_model=16, max_seq_len=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


BLOCK_LINEARS = sorted(f"blocks.{i}.{m}" for i in (0, 1)
                       for m in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down"))


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, "0.5", True])
def test_sparsity_outside_unit_interval_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"^sparsity must be in \[0, 1\), got "):
        magnitude_masks(tiny_gpt(), bad)
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\)"):
        SparsitySchedule(final=bad)


def test_default_selection_is_the_block_linears():
    gpt2, llama = tiny_gpt(), tiny_gpt("llama")
    assert sorted(prunable_linears(gpt2)) == BLOCK_LINEARS
    # all-linear: the tied GPT-2 head shares the embedding table and stays out; the
    # untied Llama head is an ordinary linear layer
    assert sorted(prunable_linears(gpt2, "all-linear")) == BLOCK_LINEARS
    assert sorted(prunable_linears(llama, "all-linear")) == BLOCK_LINEARS + ["lm_head"]
    assert sorted(prunable_linears(gpt2, ["blocks.*.mlp.*"])) == [
        "blocks.0.mlp.down", "blocks.0.mlp.up", "blocks.1.mlp.down", "blocks.1.mlp.up"]
    with pytest.raises(ConfigError, match="selects no nn.Linear"):
        prunable_linears(gpt2, ["nothing.*"])
    with pytest.raises(ConfigError, match="include must be"):
        prunable_linears(gpt2, "everything")


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9])
def test_layer_masks_equal_torch_l1_unstructured(sparsity):
    model = tiny_gpt()
    masks = magnitude_masks(model, sparsity, "layer")
    assert sorted(masks) == BLOCK_LINEARS
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        k = round(sparsity * w.numel())
        assert int((~mask).sum()) == k  # exactly the stated sparsity
        ref = torch.nn.Linear(w.shape[1], w.shape[0])
        ref.weight.data.copy_(w)
        torch_prune.l1_unstructured(ref, "weight", amount=k)
        assert torch.equal(mask, ref.weight_mask.bool()), name


def test_global_masks_equal_torch_global_unstructured():
    model = tiny_gpt()
    with torch.no_grad():  # one layer with large weights: a global threshold spares it
        model.blocks[1].mlp.up.weight.mul_(50.0)
    masks = magnitude_masks(model, 0.5, "global")
    layers = prunable_linears(model)
    total = sum(m.weight.numel() for m in layers.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    dropped = {n: 1 - m.float().mean().item() for n, m in masks.items()}
    assert dropped["blocks.1.mlp.up"] < 0.05  # spared
    # the residual outputs (init std 0.02 / sqrt(2L)) lose more than the other layers
    small = [n for n in dropped if n.endswith(("proj", "down"))]
    assert min(dropped[n] for n in small) > max(dropped[n] for n in dropped if n not in small)
    refs = {n: torch.nn.Linear(m.in_features, m.out_features) for n, m in layers.items()}
    for n, r in refs.items():
        r.weight.data.copy_(layers[n].weight)
    torch_prune.global_unstructured([(r, "weight") for r in refs.values()],
                                    pruning_method=torch_prune.L1Unstructured,
                                    amount=round(0.5 * total))
    for n, r in refs.items():
        assert torch.equal(masks[n], r.weight_mask.bool()), n


def test_pruning_is_folded_into_plain_weights():
    model = tiny_gpt("llama")
    x = torch.randint(0, VOCAB, (2, 8))
    keys = set(model.state_dict())
    masks = prune_magnitude(model, 0.5)
    assert set(model.state_dict()) == keys  # no weight_orig / weight_mask
    for name, mask in masks.items():
        lin = model.get_submodule(name)
        assert type(lin) is torch.nn.Linear and isinstance(lin.weight, torch.nn.Parameter)
        assert not hasattr(lin, "weight_mask") and not torch_prune.is_pruned(lin)
        assert bool((lin.weight[~mask] == 0).all())
    report = sparsity_report(model)
    assert all(abs(s - 0.5) < 1e-9 for s in report["layers"].values())
    assert report["overall"] == pytest.approx(0.5)
    assert model(x).isfinite().all()
    assert report["total"] == sum(model.get_submodule(n).weight.numel() for n in BLOCK_LINEARS)


def test_cubic_schedule():
    s = SparsitySchedule(final=0.8, initial=0.2, start=10, every=5, n_steps=4)
    assert s.end == 30
    assert [s(t) for t in (0, 9)] == [0.0, 0.0]
    for k in range(5):  # eq. 1 of Zhu & Gupta at t = t0 + k Δt
        t = 10 + 5 * k
        want = 0.8 + (0.2 - 0.8) * (1 - k / 4) ** 3
        assert s(t) == pytest.approx(want) and s.prunes_at(t)
        if k < 4:
            assert s(t + 4) == s(t) and not s.prunes_at(t + 4)  # held between prunings
    assert s(10) == pytest.approx(0.2) and s(30) == s(1000) == pytest.approx(0.8)
    one_shot = SparsitySchedule(final=0.6, start=3)
    assert [one_shot(t) for t in (2, 3, 50)] == [0.0, 0.6, 0.6]
    assert [t for t in range(10) if one_shot.prunes_at(t)] == [3]
    with pytest.raises(ConfigError, match="must not exceed"):
        SparsitySchedule(final=0.3, initial=0.5)
    with pytest.raises(ConfigError, match="every must be an integer >= 1"):
        SparsitySchedule(final=0.3, every=0)


# ------------------------------------------------------------------------- Trainer


class RandomTokens:
    """Batch source: random token windows, a function of (step, micro) only."""

    vocab_size = VOCAB

    def batch(self, step, micro, rng):
        x = torch.from_numpy(rng.integers(0, VOCAB, (4, 9)))
        return {"input_ids": x[:, :-1], "labels": x[:, 1:]}

    def eval_batches(self):
        return []


class Zeros(Callback):
    """Records, after the pruning callback, the zeros of every selected weight."""

    def __init__(self):
        self.model, self.zeros = None, {}

    def on_train_start(self, trainer):
        self.model = trainer.model

    def on_step_end(self, step, metrics):
        self.zeros[step] = {n: (m.weight == 0).clone()
                            for n, m in prunable_linears(self.model).items()}


def train(run_dir, callback, max_steps, resume=False, seed=0):
    model = tiny_gpt(seed=seed)
    cfg = TrainConfig(max_steps=max_steps, batch_size=4, block_size=8, lr=1e-2,
                      warmup_steps=0, schedule="constant", weight_decay=0.1, log_every=1,
                      ckpt_every=100, precision="fp32", device="cpu", threads=1)
    probe = Zeros()
    trainer = Trainer(model, cfg, RandomTokens(), None, run_dir, seed=1, resume=resume,
                      callbacks=[callback, probe], show_progress=False)
    trainer.fit()
    return model, probe


def test_gradual_masks_hold_after_every_optimizer_step(tmp_path):
    schedule = SparsitySchedule(final=0.75, initial=0.25, start=1, every=2, n_steps=2)
    before = {n: m.weight.detach().clone() for n, m in prunable_linears(tiny_gpt()).items()}
    model, probe = train(tmp_path / "run", PruningCallback(schedule), max_steps=7)
    for step, zeros in probe.zeros.items():
        for name, z in zeros.items():  # exactly round(s_t n) zeros in every layer
            assert int(z.sum()) == round(schedule(step) * z.numel()), (step, name)
        if step > 1:  # nested: once pruned, a weight stays zero through fine-tuning
            assert all(bool(z[probe.zeros[step - 1][n]].all()) for n, z in zeros.items())
    final = prunable_linears(model)
    for name, lin in final.items():  # it did train: the surviving weights moved
        live = lin.weight != 0
        assert not torch.allclose(lin.weight[live], before[name][live])
    assert sparsity_report(model)["overall"] == pytest.approx(0.75, abs=1e-3)


def test_one_shot_global_masks_stay_fixed(tmp_path):
    cb = PruningCallback(SparsitySchedule(final=0.6), scope="global")
    model, probe = train(tmp_path / "run", cb, max_steps=4)
    first = probe.zeros[1]
    total = sum(z.numel() for z in first.values())
    assert sum(int(z.sum()) for z in first.values()) == round(0.6 * total)
    for zeros in probe.zeros.values():
        assert all(torch.equal(zeros[n], first[n]) for n in first)
    assert all(torch.equal(cb.masks[n], ~first[n]) for n in first)


def test_masks_survive_resume_bit_for_bit(tmp_path):
    def schedule():
        return SparsitySchedule(final=0.7, start=1, every=2, n_steps=3)

    whole, _ = train(tmp_path / "a", PruningCallback(schedule()), max_steps=6)
    train(tmp_path / "b", PruningCallback(schedule()), max_steps=3)
    resumed, probe = train(tmp_path / "b", PruningCallback(schedule()), max_steps=6,
                           resume=True, seed=5)  # weights come from the checkpoint
    assert sorted(probe.zeros) == [4, 5, 6]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------------- sizes


def _data_bytes(path) -> int:
    """Bytes of a safetensors file's tensor data: its size minus the header."""
    raw = path.read_bytes()
    return len(raw) - 8 - struct.unpack("<Q", raw[:8])[0]


def test_dense_and_sparse_bytes_match_real_files(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    model = tiny_gpt("llama")
    model.save_pretrained(tmp_path / "dense")
    assert dense_bytes(model) == _data_bytes(tmp_path / "dense" / "model.safetensors")
    prune_magnitude(model, 0.7)
    for name, lin in prunable_linears(model).items():
        w = lin.weight.detach().numpy()
        csr = sp.csr_matrix(w)
        want = csr.data.nbytes + 4 * csr.indices.size + 4 * csr.indptr.size
        assert encoded_bytes(lin.weight, "csr") == want, name
        nnz = int(np.count_nonzero(w))
        assert encoded_bytes(lin.weight, "bitmask") == -(-w.size // 8) + 4 * nnz
    x = torch.randint(0, VOCAB, (2, 8))
    for enc in ("csr", "bitmask"):
        path = tmp_path / f"{enc}.safetensors"
        save_sparse(model, path, enc)
        assert _data_bytes(path) == sparse_bytes(model, enc)
        assert sparse_bytes(model, enc) < dense_bytes(model)
        state = load_sparse(path)
        ref = model.state_dict()
        assert set(state) == set(ref)
        for k, v in state.items():
            assert torch.equal(v, ref[k]), k
        copy = tiny_gpt("llama", seed=3)
        copy.load_state_dict(state)
        assert torch.equal(copy(x), model(x))
    meta = json.loads(__import__("safetensors").safe_open(
        str(tmp_path / "csr.safetensors"), "pt").metadata()["lmforge_sparse"])
    assert meta["blocks.0.mlp.up.weight"] == {"encoding": "csr", "shape": [128, 16]}


def test_apply_masks_multiplies_in_place():
    model = tiny_gpt()
    masks = {"blocks.0.mlp.up": torch.zeros(64, 16, dtype=torch.bool)}
    weight = model.blocks[0].mlp.up.weight
    apply_masks(model, masks)
    assert model.blocks[0].mlp.up.weight is weight and bool((weight == 0).all())
