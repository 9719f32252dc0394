"""Tensor parallelism (DTensor) over 2 gloo processes equals one process: the logits, every
gradient, the clipped gradient norm and the parameters and AdamW moments after one step,
for a GPT-2 style model (tied embeddings, LayerNorm, GELU, learned positions) and a Llama
style one (RoPE, RMSNorm, SwiGLU, grouped-query attention with n_kv_head < n_head).
Checkpoints keep the single-process layout: a DCP checkpoint written by 2 ranks loads
into one process, and one process's state loads into 2 ranks."""

from __future__ import annotations

import pytest
import torch
from distributed_helpers import run_ranks
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import Replicate, Shard

from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.losses import token_cross_entropy
from lmforge.train.config import TrainConfig
from lmforge.train.optim import build_optimizer

WORLD = 2
STYLES = ("gpt2", "llama")
# AdamW's first update is lr * g / (|g| + eps): for the few gradients near eps (e.g. the
# key bias, whose exact gradient is 0 since softmax ignores a shift of every score) float
# noise of 1e-10 moves it by up to ~lr/100, so the 1e-5 bar on parameters needs lr <= 1e-3.
LR = 3e-4
ATOL = 1e-5
FULL = StateDictOptions(full_state_dict=True)


def make_model(style: str, seed: int = 0) -> GPT:
    """A small model; the vocabulary (37) is not a multiple of 2 on purpose."""
    torch.manual_seed(seed)
    extra = {"n_kv_head": 2} if style == "llama" else {}
    return GPT(GPTConfig(vocab_size=37, style=style, n_layer=2, n_head=4, d_model=32,
                         max_seq_len=16, **extra))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 37, (3, 12), generator=g),
            torch.randint(0, 37, (3, 12), generator=g))


def train_step(model: GPT, optimizer, grads_of) -> dict:
    """Forward, backward, clip to norm 1 and one AdamW step; then the logits of the
    updated model."""
    x, y = batch()
    logits = model(x)
    token_cross_entropy(logits, y)[0].backward()
    grads = grads_of(model)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    with torch.no_grad():
        after = model(x)
    return {"logits": logits.detach(), "grads": grads, "norm": norm, "after": after}


def _tp_rank(rank: int, world_size: int, references: dict, ckpt_dir: str) -> dict:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    from lmforge.distributed.tensor_parallel import (
        apply_tensor_parallel,
        full_grads,
        tensor_parallel_optimizer,
    )

    def sharded(style: str, seed: int):
        model = apply_tensor_parallel(make_model(style, seed), mesh)
        return model, tensor_parallel_optimizer(build_optimizer(model, TrainConfig(lr=LR)))

    mesh = init_device_mesh("cpu", (world_size,))
    out = {}
    for style in STYLES:
        model, optimizer = sharded(style, 0)
        result = train_step(model, optimizer, full_grads)
        result["norm"] = result["norm"].full_tensor()
        # whole tensors in one process's layout (the trainer's model.safetensors)
        result["state"], osd = get_state_dict(model, optimizer, options=FULL)
        result["optim"] = osd["state"]
        result["local"] = {name: (p.placements[0], tuple(p.to_local().shape))
                           for name, p in model.named_parameters() if isinstance(p, DTensor)}
        result["n_params"] = len(list(model.parameters()))
        result["tied"] = model.lm_head.weight is model.wte.weight
        msd, osd = get_state_dict(model, optimizer)  # sharded, as the trainer saves them
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=f"{ckpt_dir}/{style}")
        # one process's state after its step, loaded into a differently initialised model
        model, optimizer = sharded(style, 1)
        ref_model, ref_optim = references[style]
        set_state_dict(model, optimizer, model_state_dict=ref_model,
                       optim_state_dict=ref_optim, options=FULL)
        with torch.no_grad():
            result["loaded_logits"] = model(batch()[0])
        result["loaded_optim"] = get_state_dict(model, optimizer, options=FULL)[1]["state"]
        out[style] = result
    return out


def _reference(style: str) -> dict:
    model = make_model(style)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, TrainConfig(lr=LR))
    result = train_step(model, optimizer,
                        lambda m: {n: p.grad.clone() for n, p in m.named_parameters()})
    msd, osd = get_state_dict(model, optimizer)
    return {**result, "model": model, "before": before, "msd": msd, "osd": osd}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(references, rank results, DCP folder)``."""
    refs = {style: _reference(style) for style in STYLES}
    ckpt_dir = tmp_path_factory.mktemp("tp-dcp")
    states = {style: (ref["msd"], ref["osd"]) for style, ref in refs.items()}
    return refs, run_ranks(_tp_rank, WORLD, states, str(ckpt_dir)), ckpt_dir


def assert_states_close(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, atol=ATOL, rtol=0,
                                   msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("style", STYLES)
def test_tensor_parallel_equals_single_process(runs, style):
    refs, tp_results, _ = runs
    ref = refs[style]
    cfg, state = ref["model"].config, ref["model"].state_dict()
    for rank, results in enumerate(tp_results):
        got = results[style]
        # every parameter is a DTensor, and the block matrices are really split in two
        assert len(got["local"]) == got["n_params"]
        qkv_rows = (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
        up_rows = cfg.d_ff * (2 if cfg.mlp == "swiglu" else 1)
        assert got["local"]["blocks.0.attn.qkv.weight"] == (Shard(0),
                                                            (qkv_rows // 2, cfg.d_model))
        assert got["local"]["blocks.0.attn.proj.weight"] == (Shard(1),
                                                             (cfg.d_model, cfg.d_model // 2))
        assert got["local"]["blocks.1.mlp.up.weight"] == (Shard(0),
                                                          (up_rows // 2, cfg.d_model))
        assert got["local"]["blocks.1.mlp.down.weight"] == (Shard(1),
                                                            (cfg.d_model, cfg.d_ff // 2))
        assert got["local"]["wte.weight"][0] == Shard(0)  # the vocabulary: 19 + 18
        assert got["local"]["wte.weight"][1][0] == (19, 18)[rank]
        assert got["local"]["norm_f.weight"][0] == Replicate()
        assert got["tied"] == (style == "gpt2")

        torch.testing.assert_close(got["logits"], ref["logits"], atol=ATOL, rtol=0)
        assert_states_close(got["grads"], ref["grads"], "gradient of")
        torch.testing.assert_close(got["norm"], ref["norm"], atol=ATOL, rtol=0)
        assert_states_close(got["state"], state, "after the step:")
        torch.testing.assert_close(got["after"], ref["after"], atol=ATOL, rtol=0)
        for name, moments in ref["osd"]["state"].items():
            assert_states_close(got["optim"][name], moments, f"AdamW state of {name}:")
    # the step moved the weights by about lr, far more than the tolerance
    moved = max((state[n] - ref["before"][n]).abs().max().item() for n in state)
    assert moved > 0.5 * LR > 10 * ATOL


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # DCP in one process
@pytest.mark.parametrize("style", STYLES)
def test_checkpoints_move_between_one_and_two_processes(runs, style):
    import torch.distributed.checkpoint as dcp

    refs, tp_results, ckpt_dir = runs
    ref = refs[style]
    # 1 -> 2: one process's weights and moments, loaded into the 2 ranks
    for results in tp_results:
        got = results[style]
        torch.testing.assert_close(got["loaded_logits"], ref["after"], atol=ATOL, rtol=0)
        for name, moments in ref["osd"]["state"].items():
            assert_states_close(got["loaded_optim"][name], moments, f"loaded state of {name}:")
    # 2 -> 1: the ranks' DCP checkpoint, loaded into one plain process
    model = make_model(style, seed=2)
    optimizer = build_optimizer(model, TrainConfig(lr=LR))
    msd, osd = get_state_dict(model, optimizer)
    states = {"model": msd, "optim": osd}
    dcp.load(states, checkpoint_id=ckpt_dir / style)
    set_state_dict(model, optimizer, model_state_dict=states["model"],
                   optim_state_dict=states["optim"])
    assert_states_close(model.state_dict(), ref["model"].state_dict(), "loaded")
    loaded_optim = get_state_dict(model, optimizer)[1]["state"]
    for name, moments in ref["osd"]["state"].items():
        assert_states_close(loaded_optim[name], moments, f"loaded state of {name}:")


def test_configs_that_cannot_be_split_are_refused():
    from lmforge.distributed.tensor_parallel import check_tensor_parallel

    check_tensor_parallel(GPTConfig(vocab_size=10, n_head=4, n_kv_head=2, d_model=32), 2)
    with pytest.raises(ConfigError, match="n_kv_head=1"):
        check_tensor_parallel(GPTConfig(vocab_size=10, n_head=4, n_kv_head=1, d_model=32), 2)
    with pytest.raises(ConfigError, match="n_head=6"):
        check_tensor_parallel(GPTConfig(vocab_size=10, n_head=6, d_model=48), 4)
    with pytest.raises(ConfigError, match="d_ff=90"):
        check_tensor_parallel(GPTConfig(vocab_size=10, n_head=4, d_model=32, d_ff=90), 4)
    with pytest.raises(ConfigError, match="dropout=0"):
        check_tensor_parallel(GPTConfig(vocab_size=10, n_head=4, d_model=32, dropout=0.1), 2)


def test_fused_rows_are_reordered_per_rank():
    from lmforge.distributed.tensor_parallel import shard_row_order

    # q has 4 rows, k and v 2 each: rank 0 gets q[0:2], k[0:1], v[0:1], rank 1 the rest
    order = shard_row_order([4, 2, 2], 2)
    assert order.tolist() == [0, 1, 4, 6, 2, 3, 5, 7]
