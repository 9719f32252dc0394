"""Positional encodings: sinusoidal, learned, RoPE, T5 relative buckets, ALiBi."""

import math

import numpy as np
import pytest
import torch

from lmforge.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    T5RelativePositionBias,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    relative_position_bucket,
    relative_positions,
    rope_tables,
    sinusoidal_table,
)


@pytest.mark.parametrize("d", [16, 7, 1])
def test_sinusoidal_matches_the_paper_formula(d):
    T = 50
    pe = sinusoidal_table(T, d).numpy()
    ref = np.zeros((T, d))
    for pos in range(T):
        for c in range(d):
            i = c // 2  # channel 2i is sin, 2i+1 is cos of the same frequency
            angle = pos / 10000 ** (2 * i / d)
            ref[pos, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    np.testing.assert_allclose(pe, ref, atol=1e-6, rtol=0)


def test_sinusoidal_shift_is_a_rotation():
    # PE[pos + k] is the same linear map of PE[pos] for every pos (per frequency a rotation).
    d, k = 8, 5
    pe = sinusoidal_table(40, d).double()
    for i in range(d // 2):
        w = 1 / 10000 ** (2 * i / d)
        rot = torch.tensor([[math.cos(k * w), -math.sin(k * w)],
                            [math.sin(k * w), math.cos(k * w)]], dtype=torch.float64)
        pair = pe[:, 2 * i:2 * i + 2]  # (T, 2) = (sin, cos)
        torch.testing.assert_close(pair[:-k] @ rot, pair[k:], atol=1e-6, rtol=0)


def test_positional_modules_and_range_errors():
    pe = SinusoidalPositionalEncoding(8, max_len=10)
    assert pe(torch.arange(3)).shape == (3, 8)
    assert not pe.state_dict()  # the fixed table is not saved
    with pytest.raises(ValueError, match="max_seq_len"):
        pe(torch.arange(11))
    learned = LearnedPositionalEmbedding(10, 8)
    assert learned(torch.arange(4)[None]).shape == (1, 4, 8)
    with pytest.raises(ValueError, match="positional table"):
        learned(torch.tensor([10]))


# ---------------------------------------------------------------------- RoPE

def test_rope_is_relative_and_matches_gpt():
    from lmforge.models import gpt

    torch.manual_seed(0)
    d_h = 16
    cos, sin = rope_tables(d_h, 64)
    gcos, gsin = gpt.rope_tables(d_h, 64, 10000.0)
    torch.testing.assert_close(cos, gcos)
    torch.testing.assert_close(sin, gsin)
    q, k = torch.randn(d_h), torch.randn(d_h)

    def score(m, n):
        return float(apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n]))

    for m, n in [(3, 1), (20, 18), (50, 48)]:  # all at distance 2
        assert score(m, n) == pytest.approx(score(2, 0), abs=1e-4)
    assert abs(score(5, 0) - score(2, 0)) > 1e-3  # and the distance does matter
    # norms are preserved (a rotation)
    torch.testing.assert_close(apply_rope(q, cos[7], sin[7]).norm(), q.norm())


def test_rotary_module_with_batched_positions():
    rope = RotaryEmbedding(8, max_len=32)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    pos = torch.arange(5)
    q1, k1 = rope(q, k, pos)
    q2, k2 = rope(q, k, pos.expand(2, 5))
    torch.testing.assert_close(q1, q2)
    torch.testing.assert_close(k1, k2)
    with pytest.raises(ValueError, match="even"):
        rope_tables(7, 4)


# ---------------------------------------------------------------------- T5 buckets

def bucket_from_the_paper(rel, bidirectional, num_buckets, max_distance):
    """T5 (Raffel et al. 2020, mesh_tensorflow): exact buckets for small distances,
    logarithmic ones up to max_distance, written with plain Python floats."""
    n, offset = num_buckets, 0
    if bidirectional:
        n = num_buckets // 2
        if rel > 0:
            offset = n
        dist = abs(rel)
    else:
        dist = max(-rel, 0)
    exact = n // 2
    if dist < exact:
        return offset + dist
    log_bucket = exact + int(math.log(dist / exact) / math.log(max_distance / exact)
                             * (n - exact))
    return offset + min(log_bucket, n - 1)


SETTINGS = [(bi, nb, md) for bi in (True, False) for nb in (4, 8, 16, 32, 64, 128)
            for md in (8, 20, 128, 500) if md > (nb // 2 if bi else nb) // 2]


def test_relative_bucket_matches_brute_force():
    rel = torch.arange(-700, 701)
    for bi, nb, md in SETTINGS:
        got = relative_position_bucket(rel, bi, nb, md).tolist()
        want = [bucket_from_the_paper(r, bi, nb, md) for r in rel.tolist()]
        assert got == want, (bi, nb, md)


def test_relative_bucket_matches_transformers_t5():
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    rel = torch.arange(-3000, 3001)
    for bi, nb, md in SETTINGS:
        want = t5.T5Attention._relative_position_bucket(rel, bidirectional=bi, num_buckets=nb,
                                                        max_distance=md)
        assert torch.equal(relative_position_bucket(rel, bi, nb, md), want), (bi, nb, md)


def test_relative_bucket_properties():
    rel = torch.arange(-300, 301)
    b = relative_position_bucket(rel, True, 32, 128)
    assert b.min() == 0 and b.max() == 31
    assert torch.equal(b[300 - 7:300 + 1].flip(0), torch.arange(8))  # exact: 0 .. 7
    assert torch.all(b[rel > 0] >= 16) and torch.all(b[rel <= 0] < 16)  # halves by sign
    assert set(b[rel.abs() >= 128].tolist()) == {15, 31}  # far: the last bucket of each half
    u = relative_position_bucket(rel, False, 32, 128)
    assert torch.all(u[rel >= 0] == 0)  # unidirectional: the future is bucket 0
    assert torch.all(u[:-1] >= u[1:])  # monotone in the distance


def test_t5_bias_shape_and_values():
    torch.manual_seed(0)
    bias = T5RelativePositionBias(n_heads=3, num_buckets=8, max_distance=16)
    out = bias(4, 6, query_offset=2)
    assert out.shape == (1, 3, 4, 6)
    rel = relative_positions(4, 6, 2)
    assert rel[0, 0] == -2 and rel[3, 5] == 0
    buckets = relative_position_bucket(rel, True, 8, 16)
    torch.testing.assert_close(out[0, 1], bias.embedding.weight[buckets, 1])


# ---------------------------------------------------------------------- ALiBi

def test_alibi_slopes():
    assert alibi_slopes(8).tolist() == [1 / 2 ** k for k in range(1, 9)]
    assert alibi_slopes(16).tolist() == pytest.approx([2 ** (-k / 2) for k in range(1, 17)])
    # 12 heads: the 8 slopes of 8 heads, then every other slope of 16 heads
    # (2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5), the interpolation published with ALiBi.
    want = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(4)]
    assert alibi_slopes(12).tolist() == pytest.approx(want, rel=1e-6)
    assert alibi_slopes(1).tolist() == [2.0 ** -8]
    assert alibi_slopes(6).tolist() == pytest.approx([2.0 ** -2, 2.0 ** -4, 2.0 ** -6,
                                                      2.0 ** -8, 2.0 ** -1, 2.0 ** -3])


def test_alibi_bias():
    b = alibi_bias(4, 5, 5)
    assert b.shape == (1, 4, 5, 5)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                assert float(b[0, h, i, j]) == pytest.approx(-float(slopes[h]) * abs(i - j))
    c = alibi_bias(4, 5, 5, causal=True)
    assert torch.isinf(c[0, :, 0, 1:]).all() and torch.equal(c.tril(), b.tril())
    # with a cache: one query at position 4 against 5 keys = the last row of the full bias
    torch.testing.assert_close(alibi_bias(4, 1, 5, causal=True, query_offset=4), c[:, :, 4:])
    # a row's softmax is unchanged by shifting all of its biases: causal ALiBi = slope * j
    scores = torch.randn(4, 5, 5)
    shifted = slopes[:, None, None] * torch.arange(5.0)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close((scores + c[0]).softmax(-1),
                               (scores + shifted).masked_fill(~mask, -math.inf).softmax(-1))
