r"""Positional information for attention: absolute encodings and relative biases.

Written by hand because lmforge teaches them. Attention itself is permutation-invariant
(it sees a *set* of keys), so the order of tokens must be injected, in one of two ways:
added to the token embeddings (absolute), or added to / applied inside the attention
scores (relative).

Absolute, added to the embeddings ``x_0 = E[tokens] + PE[positions]``:

- **sinusoidal** (Vaswani et al. 2017), fixed, for position ``pos`` and channel pair
  ``i = 0 .. d/2 - 1``::

      PE[pos, 2i]     = sin(pos / 10000^(2i/d))
      PE[pos, 2i + 1] = cos(pos / 10000^(2i/d))

  Each pair is a rotation at its own frequency, so ``PE[pos + k]`` is a fixed linear
  function (a rotation) of ``PE[pos]`` for every ``pos``.
- **learned**: a trainable table ``P`` of ``max_len`` rows (BERT, GPT-2). It cannot go
  beyond the length it was trained with.

Relative, inside attention (``A = softmax(q k^T / sqrt(d_h) + bias)``):

- **RoPE** (Su et al. 2021) rotates the channel pairs ``(c, c + d_h/2)`` of q and k at
  position ``p`` by the angle ``p * theta^(-2c/d_h)``; since rotations compose,
  ``<R_m q, R_n k> = <q, R_(n-m) k>`` depends on ``m - n`` only.
- **T5 relative position bias** (Raffel et al. 2020): one learned scalar per head and
  *bucket* of the relative position ``r = j - i`` (key minus query). With ``n`` buckets
  (halved when ``bidirectional``, the sign of ``r`` then picking the half) and
  ``d = |r|`` (bidirectional) or ``d = max(-r, 0)`` (unidirectional: the future all
  falls into bucket 0)::

      max_exact = n / 2
      bucket(d) = d                                           if d < max_exact
                = min(n - 1, max_exact + floor(log(d / max_exact)
                       / log(max_distance / max_exact) * (n - max_exact)))   otherwise

  half the buckets hold the exact small distances, the other half grow logarithmically
  up to ``max_distance``; every distance beyond it shares the last bucket.
- **ALiBi** (Press et al. 2022): no parameters; head ``h`` (1-based) of ``n`` adds
  ``-m_h * |i - j|`` (or ``-m_h * (i - j)`` for ``j <= i`` in a causal model) with the
  geometric slopes ``m_h = 2^(-8h/n)`` when ``n`` is a power of two. Otherwise, with
  ``p`` the largest power of two below ``n``, the slopes are the ``p`` slopes for ``p``
  heads followed by every other slope for ``2p`` heads (``2^(-8(2k-1)/(2p))``,
  ``k = 1 .. n - p``), the interpolation of the ALiBi paper's code.

All the bias functions return a float tensor of shape ``(1, heads, q_len, k_len)`` to be
added to the scores; query ``i`` sits at position ``query_offset + i`` and key ``j`` at
position ``j`` (pass ``query_offset = past_length`` when decoding with a KV cache).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_table", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "rope_tables", "apply_rope", "RotaryEmbedding", "relative_position_bucket",
           "T5RelativePositionBias", "alibi_slopes", "alibi_bias", "relative_positions"]


# ---------------------------------------------------------------------- absolute

def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """``PE`` of shape (max_len, d_model): sin on even channels, cos on odd ones.

    An odd ``d_model`` keeps the sine of the last, unpaired frequency.
    """
    if max_len < 0 or d_model < 1:
        raise ValueError("max_len must be >= 0 and d_model >= 1")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i = 0, 2, 4, ...
    angle = pos / base ** (two_i / d_model)  # (T, ceil(d/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal table; ``forward(positions)`` -> (..., d_model).

    The table is a non-persistent buffer: it is not saved with the weights.
    """

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("table", sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        _check_positions(positions, self.max_len)
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Embedding):
    """A trainable ``(max_len, d_model)`` table; ``forward(positions)`` -> (..., d_model)."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__(max_len, d_model)
        self.max_len = max_len

    def forward(self, positions: Tensor) -> Tensor:  # type: ignore[override]
        _check_positions(positions, self.max_len)
        return super().forward(positions)


def _check_positions(positions: Tensor, max_len: int) -> None:
    if positions.numel() and int(positions.max()) >= max_len:
        raise ValueError(f"position {int(positions.max())} is beyond the positional table "
                         f"(max_len={max_len}); raise max_seq_len")


# ---------------------------------------------------------------------- rotary

def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (max_len, head_dim), rotate-half convention.

    Channel ``c`` and ``c + head_dim/2`` share the frequency ``theta^(-2c/head_dim)``.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head size, got {head_dim}")
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, d_h/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d_h)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (c, c + d_h/2) of ``x`` (..., T, d_h) by cos/sin (.., T, d_h).

    ``[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]`` (the two halves of the last dim).
    """
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE tables as buffers; ``forward(q, k, positions)`` rotates both.

    ``q`` (B, h, T, d_h), ``k`` (B, h_kv, T, d_h), ``positions`` (T,) or (B, T).
    """

    def __init__(self, head_dim: int, max_len: int = 4096, theta: float = 10000.0):
        super().__init__()
        cos, sin = rope_tables(head_dim, max_len, theta)
        self.max_len = max_len
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        _check_positions(positions, self.max_len)
        cos, sin = self.cos[positions], self.sin[positions]  # (T, d_h) or (B, T, d_h)
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, d_h)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)


# ---------------------------------------------------------------------- relative biases

def relative_positions(q_len: int, k_len: int, query_offset: int = 0,
                       device: torch.device | str | None = None) -> Tensor:
    """(q_len, k_len) matrix ``r[i, j] = j - (query_offset + i)`` (key minus query)."""
    q = torch.arange(query_offset, query_offset + q_len, device=device)
    k = torch.arange(k_len, device=device)
    return k[None, :] - q[:, None]


def relative_position_bucket(relative_position: Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """T5's bucket (0 .. num_buckets-1) of each relative position ``j - i`` (an int tensor).

    See the module docstring for the formula. The logarithm is taken in float32, as in
    T5 (and in ``transformers``), so the buckets agree with it exactly.
    """
    if num_buckets < 2 or (bidirectional and num_buckets < 4):
        raise ValueError("num_buckets must be >= 2 (>= 4 when bidirectional)")
    rel = relative_position.long()
    bucket = torch.zeros_like(rel)
    n = num_buckets
    if bidirectional:
        n //= 2
        bucket = bucket + (rel > 0).long() * n  # keys after the query: upper half
        dist = rel.abs()
    else:
        dist = (-rel).clamp(min=0)  # only the past is told apart; the future is 0
    max_exact = n // 2
    if max_distance <= max_exact:
        raise ValueError(f"max_distance={max_distance} must exceed the exact range "
                         f"({max_exact})")
    # Logarithmic buckets: max_exact .. n-1 cover distances max_exact .. max_distance.
    log_ratio = torch.log(dist.float().clamp(min=1) / max_exact) \
        / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (n - max_exact)).long()
    large = large.clamp(max=n - 1)
    return bucket + torch.where(dist < max_exact, dist, large)


class T5RelativePositionBias(nn.Module):
    """One learned bias per (bucket, head): ``forward(q_len, k_len)`` -> (1, h, q, k)."""

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True):
        super().__init__()
        self.n_heads, self.num_buckets = n_heads, num_buckets
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.embedding = nn.Embedding(num_buckets, n_heads)

    def forward(self, q_len: int, k_len: int, query_offset: int = 0) -> Tensor:
        rel = relative_positions(q_len, k_len, query_offset, self.embedding.weight.device)
        buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                           self.max_distance)  # (q, k)
        bias = self.embedding(buckets)  # (q, k, h)
        return bias.permute(2, 0, 1)[None]  # (1, h, q, k)


def alibi_slopes(n_heads: int) -> Tensor:
    """The ALiBi slope of each head, (n_heads,), largest first.

    ``2^(-8h/n)`` for ``h = 1..n`` when ``n`` is a power of two; otherwise the slopes of
    the largest power of two ``p < n`` followed by the odd-indexed slopes of ``2p`` heads.
    """
    if n_heads < 1:
        raise ValueError("n_heads must be >= 1")

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    p = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = power_of_two(p)
    if p != n_heads:
        slopes += power_of_two(2 * p)[0::2][: n_heads - p]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_heads: int, q_len: int, k_len: int, causal: bool = False,
               query_offset: int = 0, device: torch.device | str | None = None) -> Tensor:
    """ALiBi bias (1, h, q, k): ``-m_h |i - j|``; with ``causal`` ``-m_h (i - j)`` for
    ``j <= i`` and ``-inf`` for the future keys ``j > i``."""
    rel = relative_positions(q_len, k_len, query_offset, device).float()  # j - i
    slopes = alibi_slopes(n_heads).to(device)[:, None, None]  # (h, 1, 1)
    bias = -slopes * rel.abs()  # (h, q, k)
    if causal:
        bias = bias.masked_fill(rel > 0, float("-inf"))
    return bias[None]
