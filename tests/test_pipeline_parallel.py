"""Pipeline parallelism (torch.distributed.pipelining) over 2 gloo processes equals one
process: a 4-block GPT split in 2 stages, 4 micro-batches, the GPipe and 1F1B schedules;
the loss, every gradient (after one step, accumulated over two) and the clipped global
gradient norm, for GPT-2 style (tied embeddings across the two stages) and
Llama style (RoPE, GQA). Some labels are ignored (-100), so the micro-batches count
different numbers of tokens and a plain mean of micro-batch means would be wrong."""

from __future__ import annotations

import pytest
import torch
from distributed_helpers import run_ranks

from lmforge.errors import ConfigError, LmforgeError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.losses import token_cross_entropy

WORLD = 2
STYLES = ("gpt2", "llama")
SCHEDULES = ("gpipe", "1f1b")
MICROBATCHES = 4
ATOL = 1e-5


def make_model(style: str) -> GPT:
    torch.manual_seed(0)
    extra = {"n_kv_head": 2} if style == "llama" else {}
    return GPT(GPTConfig(vocab_size=37, style=style, n_layer=4, n_head=4, d_model=32,
                         max_seq_len=16, **extra))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 37, (8, 12), generator=g)
    y = torch.randint(0, 37, (8, 12), generator=g)
    y[0, :5] = y[5, 7:] = -100  # micro-batches 0 and 2 have fewer targets
    return x, y


def _pp_rank(rank: int, world_size: int) -> dict:
    from lmforge.distributed.pipeline import (
        build_pipeline,
        clip_pipeline_grad_norm_,
        pipeline_step,
    )

    x, y = batch()
    out = {}
    for style in STYLES:
        for schedule_name in SCHEDULES:
            model = make_model(style)
            if rank == world_size - 1:  # a stale copy of the embedding, which the last
                model.wte.weight.data.mul_(2.0)  # stage replaces by stage 0's at the build
            schedule, stage = build_pipeline(model, MICROBATCHES, schedule_name)
            params = dict(stage.submod.named_parameters())
            losses, grads = [], []
            for _ in range(2):  # the second step accumulates onto the first one's .grad
                losses.append(pipeline_step(schedule, stage, x, y))
                grads.append({n: p.grad.clone() for n, p in params.items()})
            norm = clip_pipeline_grad_norm_(stage, 1.0)
            clipped = {n: p.grad.clone() for n, p in params.items()}
            out[style, schedule_name] = {"losses": losses, "grads": grads, "norm": norm,
                                         "clipped": clipped}
    bad_ids = x.clone()
    bad_ids[3, 4] = 37
    out["errors"] = [_error(pipeline_step, schedule, stage, *bad)
                     for bad in ((x[:6], y[:6]), (x[:, :10], y[:, :10]), (bad_ids, y))]
    return out


def _error(fn, *args) -> tuple[str, str]:
    with pytest.raises(LmforgeError) as err:
        fn(*args)
    return type(err.value).__name__, str(err.value)


@pytest.fixture(scope="module")
def pp_results():
    return run_ranks(_pp_rank, WORLD)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("style", STYLES)
def test_pipeline_equals_single_process(pp_results, style, schedule):
    ref = make_model(style)
    x, y = batch()
    loss = token_cross_entropy(ref(x), y)[0]
    loss.backward()
    params = dict(ref.named_parameters(remove_duplicate=False))
    ref_grads = {n: p.grad.clone() for n, p in params.items()}
    token_cross_entropy(ref(x), y)[0].backward()  # accumulate a second step, then clip
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    assert ref_norm > 1  # so clipping changes the gradients
    stage0, stage1 = (results[style, schedule] for results in pp_results)
    # stage 0: embeddings and blocks 0-1; stage 1: blocks 2-3, final norm and head
    names0, names1 = set(stage0["grads"][0]), set(stage1["grads"][0])
    assert {n.split(".")[1] for n in names0 if n.startswith("blocks.")} == {"0", "1"}
    assert {n.split(".")[1] for n in names1 if n.startswith("blocks.")} == {"2", "3"}
    assert "wte.weight" in names0 and "lm_head.weight" in names1
    assert names0 | names1 == set(ref_grads) and not names0 & names1
    for got in (stage0, stage1):
        for step, (step_loss, grads) in enumerate(zip(got["losses"], got["grads"], strict=True), 1):
            torch.testing.assert_close(step_loss, loss.detach(), atol=ATOL, rtol=0)
            for name, grad in grads.items():
                torch.testing.assert_close(
                    grad, step * ref_grads[name], atol=ATOL, rtol=0,
                    msg=lambda m, name=name, step=step: f"grad of {name}, step {step}: {m}")
        torch.testing.assert_close(got["norm"], ref_norm, atol=ATOL, rtol=0)
        for name, grad in got["clipped"].items():
            torch.testing.assert_close(grad, params[name].grad, atol=ATOL, rtol=0,
                                       msg=lambda m, name=name: f"clipped {name}: {m}")


def test_bad_batches_stop_every_rank_with_one_line(pp_results):
    """Checked before any communication, so no rank is left waiting for another."""
    for results in pp_results:
        assert results["errors"] == [
            ("ConfigError", "batch size 6 is not divisible by the 4 pipeline micro-batches"),
            ("ModelInputError", "this pipeline runs batches of shape (8, 12), got (8, 10) "
                                "(build another pipeline for another shape)"),
            ("ModelInputError", "input_ids or labels hold token ids outside [0, 37) "
                                "(vocab_size=37)")]


def test_stage_split_and_refusals():
    from lmforge.distributed.pipeline import stage_layers

    assert stage_layers(5, 2) == [range(0, 3), range(3, 5)]
    assert stage_layers(4, 4) == [range(i, i + 1) for i in range(4)]
    with pytest.raises(ConfigError, match="n_layer=2 blocks into 3 pipeline stages"):
        stage_layers(2, 3)
