"""Bahdanau/Luong attention, explicit scaled dot-product attention and multi-head
attention (against F.scaled_dot_product_attention and torch.nn.MultiheadAttention)."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.nn.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    MultiplicativeAttention,
    scaled_dot_product_attention_explicit,
)

TOL = dict(atol=1e-5, rtol=0)


def source(B=3, S=6, D=8, lengths=(6, 4, 1)):
    torch.manual_seed(0)
    keys = torch.randn(B, S, D)
    mask = torch.arange(S)[None] < torch.tensor(lengths)[:, None]  # True = real
    return keys, mask


@pytest.mark.parametrize("make", [
    lambda: AdditiveAttention(5, 8, 7),
    lambda: MultiplicativeAttention(5, 8, "general"),
], ids=["additive", "multiplicative"])
def test_rnn_attention_weights_shapes_and_masks(make):
    attn = make()
    keys, mask = source()
    values = torch.randn(3, 6, 4)
    q = torch.randn(3, 5)
    ctx, w = attn(q, keys, values, mask=mask)
    assert ctx.shape == (3, 4) and w.shape == (3, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(3), **TOL)
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[2, 1:] == 0) and w[2, 0] == 1  # one real key takes all the weight
    torch.testing.assert_close(ctx, torch.einsum("bs,bsd->bd", w, values), **TOL)
    # a batch of queries (B, T, Dq) gives the same rows as one query at a time
    qs = torch.randn(3, 2, 5)
    ctx2, w2 = attn(qs, keys, mask=mask)
    assert ctx2.shape == (3, 2, 8) and w2.shape == (3, 2, 6)
    for t in range(2):
        c1, w1 = attn(qs[:, t], keys, mask=mask)
        torch.testing.assert_close(w2[:, t], w1, **TOL)
        torch.testing.assert_close(ctx2[:, t], c1, **TOL)
    # keys projected once give the same answer
    c3, w3 = attn(q, keys, values, mask=mask, projected_keys=attn.project_keys(keys))
    torch.testing.assert_close(w3, w, **TOL)


def test_additive_score_formula():
    attn = AdditiveAttention(5, 8, 7)
    keys, _ = source()
    q = torch.randn(3, 5)
    _, w = attn(q, keys)
    e = torch.stack([torch.stack([attn.v.weight[0] @ torch.tanh(
        attn.w_s.weight @ q[b] + attn.w_h.weight @ keys[b, j] + attn.w_h.bias)
        for j in range(6)]) for b in range(3)])
    torch.testing.assert_close(w, torch.softmax(e, -1), **TOL)


def test_multiplicative_scores():
    keys, mask = source(D=5)
    q = torch.randn(3, 5)
    dot = MultiplicativeAttention(5, 5, "dot")
    _, w = dot(q, keys, mask=mask)
    e = torch.einsum("bd,bsd->bs", q, keys).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(w, torch.softmax(e, -1), **TOL)
    gen = MultiplicativeAttention(5, 5, "general")
    _, w = gen(q, keys)
    e = torch.einsum("bd,de,bse->bs", q, gen.w.weight, keys)  # s^T W h
    torch.testing.assert_close(w, torch.softmax(e, -1), **TOL)
    with pytest.raises(ValueError, match="general"):
        MultiplicativeAttention(4, 5, "dot")


@pytest.mark.parametrize("case", ["none", "bool", "float", "causal", "causal_rect",
                                  "causal_and_mask", "scale"])
def test_explicit_equals_fused(case):
    torch.manual_seed(1)
    B, h, T, S, d = 2, 3, 5, 5, 8
    if case == "causal_rect":
        S = 7
    q, k, v = torch.randn(B, h, T, d), torch.randn(B, h, S, d), torch.randn(B, h, S, 6)
    kw: dict = {}
    mask = None
    if case in ("bool", "causal_and_mask"):
        mask = torch.rand(B, 1, T, S) > 0.3
        mask[..., 0] = True
    if case == "float":
        mask = torch.randn(B, 1, T, S)
    causal = case.startswith("causal")
    if case == "scale":
        kw["scale"] = 0.3
    out, w = scaled_dot_product_attention_explicit(q, k, v, mask, causal=causal, **kw)
    if case == "causal_and_mask":  # SDPA takes one or the other: combine by hand
        ref = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask & torch.ones(T, S, dtype=torch.bool).tril())
    else:
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, **kw)
    torch.testing.assert_close(out, ref, **TOL)
    assert w.shape == (B, h, T, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, h, T), **TOL)
    if causal:
        assert torch.all(w.triu(1) == 0)
    if case == "none":  # by hand: softmax(q k^T / sqrt(d)) v
        manual = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)
        torch.testing.assert_close(w, manual, **TOL)


def test_fully_masked_query_gets_zeros_like_sdpa():
    q, k, v = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    out, w = scaled_dot_product_attention_explicit(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               **TOL)
    assert torch.all(w[..., 0, :] == 0) and torch.all(out[..., 0, :] == 0)
    assert not torch.isnan(w).any()


def test_dropout_keeps_returned_weights_normalised():
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    out0, w0 = scaled_dot_product_attention_explicit(q, k, v)
    out, w = scaled_dot_product_attention_explicit(q, k, v, dropout=0.5)
    torch.testing.assert_close(w, w0, **TOL)  # weights are the softmax before dropout
    assert not torch.allclose(out, out0)


def mha_pair(E=16, H=4, kdim=None, vdim=None, bias=True):
    torch.manual_seed(3)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=vdim, bias=bias)
    ours = MultiHeadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias).load_torch_weights(ref)
    return ours.eval(), ref.eval()


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_mha_matches_torch_self_attention(need_weights, masks):
    ours, ref = mha_pair()
    B, T = 3, 6
    x = torch.randn(B, T, 16)
    key_mask = torch.arange(T)[None] < torch.tensor([6, 4, 2])[:, None]  # True = real
    use_pad, causal = masks in ("padding", "both"), masks in ("causal", "both")
    blocked = torch.ones(T, T, dtype=torch.bool).triu(1)  # torch: True = NOT allowed
    r_out, r_w = ref(x, x, x, key_padding_mask=~key_mask if use_pad else None,
                     attn_mask=blocked if causal else None, need_weights=True)
    out, w = ours(x, key_mask=key_mask if use_pad else None, causal=causal,
                  need_weights=need_weights)
    torch.testing.assert_close(out, r_out, **TOL)
    if need_weights:
        torch.testing.assert_close(w, r_w, **TOL)
    else:
        assert w is None


def test_mha_cross_attention_kdim_and_per_head_weights():
    ours, ref = mha_pair(E=16, H=2, kdim=10, vdim=10)
    x, mem = torch.randn(2, 3, 16), torch.randn(2, 5, 10)
    key_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    r_out, r_w = ref(x, mem, mem, key_padding_mask=~key_mask, average_attn_weights=False)
    for need in (True, False):
        out, w = ours(x, mem, key_mask=key_mask, need_weights=need, average_weights=False)
        torch.testing.assert_close(out, r_out, **TOL)
    torch.testing.assert_close(ours(x, mem, key_mask=key_mask, need_weights=True,
                                    average_weights=False)[1], r_w, **TOL)


def test_mha_float_and_batched_masks_and_errors():
    ours, ref = mha_pair(bias=False)
    x = torch.randn(2, 4, 16)
    fmask = torch.randn(4, 4)
    r_out, _ = ref(x, x, x, attn_mask=fmask)
    for need in (True, False):
        torch.testing.assert_close(ours(x, attn_mask=fmask, need_weights=need)[0], r_out, **TOL)
    allowed = torch.rand(2, 4, 4) > 0.4
    allowed[..., 0] = True
    a = ours(x, attn_mask=allowed, need_weights=True)[0]
    b = ours(x, attn_mask=allowed)[0]
    torch.testing.assert_close(a, b, **TOL)
    # a float mask together with padding and causal
    key_mask = torch.tensor([[True] * 4, [True, True, True, False]])
    a = ours(x, key_mask=key_mask, attn_mask=fmask, causal=True, need_weights=True)[0]
    b = ours(x, key_mask=key_mask, attn_mask=fmask, causal=True)[0]
    torch.testing.assert_close(a, b, **TOL)
    with pytest.raises(ValueError, match="key_mask"):
        ours(x, key_mask=key_mask.long())
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
