"""KV-cache parity: decoding with the cache computes what the full forward pass does."""

from __future__ import annotations

import pytest
import torch

from lmforge.generate import GenerationConfig, generate_ids
from lmforge.models.gpt import GPT, GPTConfig

V = 97


def tiny(style: str) -> GPT:
    torch.manual_seed(0)
    extra = {"n_kv_head": 2} if style == "llama" else {}  # grouped-query attention
    cfg = GPTConfig(vocab_size=V, style=style, n_layer=2, n_head=4, d_model=32,
                    max_seq_len=32, init_std=0.3, **extra)
    return GPT(cfg).eval()


def batch(padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of 12 tokens; with ``padded`` the first two are left-padded."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    if padded:
        mask[0, :5] = 0
        mask[1, :2] = 0
        ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("style", ["gpt2", "llama"])
@torch.inference_mode()
def test_cached_logits_match_full_forward(style, padded):
    model = tiny(style)
    ids, mask = batch(padded)
    full = model(ids, mask if padded else None)  # (B, T, V)
    prefill = 6
    cache = model.new_cache(3, max_len=12)
    out = model(ids[:, :prefill], mask[:, :prefill] if padded else None, cache=cache)
    torch.testing.assert_close(out, full[:, :prefill], atol=1e-5, rtol=0)
    for t in range(prefill, 12):
        step = model(ids[:, t:t + 1], mask[:, t:t + 1], cache=cache, last_only=True)
        torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0)
    if padded:  # a padded row computes what it computes alone, without padding
        alone = model(ids[0:1, 5:])
        torch.testing.assert_close(full[0:1, 5:], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_greedy_with_and_without_cache_agree(style):
    model = tiny(style)
    prompts = [[1, 5, 9, 13, 17, 21], [1, 2], [1, 30, 40, 50]]
    with_cache = generate_ids(model, prompts, GenerationConfig(max_new_tokens=10,
                                                               temperature=0))
    without = generate_ids(model, prompts, GenerationConfig(max_new_tokens=10, temperature=0,
                                                            use_cache=False))
    assert with_cache == without


def test_reorder_keeps_rows():
    model = tiny("llama")
    ids, mask = batch(True)
    with torch.inference_mode():
        cache = model.new_cache(3, max_len=13)
        model(ids, mask, cache=cache)
        cache.reorder(torch.tensor([2, 0]))
        nxt = torch.tensor([[7], [8]])
        step = model(nxt, cache=cache, last_only=True)[:, 0]
        full = model(torch.cat([ids[[2, 0]], nxt], 1),
                     torch.cat([mask[[2, 0]], torch.ones(2, 1, dtype=torch.long)], 1))
    torch.testing.assert_close(step, full[:, -1], atol=1e-5, rtol=0)
