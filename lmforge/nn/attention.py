r"""Attention: the RNN-era scores (Bahdanau, Luong) and scaled dot-product attention.

Written by hand because lmforge teaches them. One mask convention holds in this whole
file, the one of ``F.scaled_dot_product_attention``: a **boolean mask is True where
attention is allowed** (a real key), False where it is blocked (padding, the future).
A float mask is added to the scores (0 keeps, ``-inf`` blocks).

Attention over encoder states :math:`h_1..h_S` for a decoder state (query) :math:`s`::

    e_j = score(s, h_j)                 (e_j = -inf where the mask is False)
    a   = softmax(e)                    (weights, sum to 1 over the allowed keys)
    c   = sum_j a_j h_j                 (context)

Scores:

- additive (Bahdanau et al. 2015): ``score(s, h) = v^T tanh(W_s s + W_h h + b)``
- multiplicative (Luong et al. 2015): ``general``: ``score(s, h) = s^T W h``;
  ``dot``: ``score(s, h) = s^T h`` (needs equal sizes)

Scaled dot-product attention (Vaswani et al. 2017), for queries Q (T, d_k), keys K
(S, d_k), values V (S, d_v)::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

with M = 0 where allowed and -inf where blocked (causal: position i sees j <= i).
Multi-head attention projects the inputs ``h`` times into heads of size d / h::

    head_i = Attention(Q W_q^i, K W_k^i, V W_v^i),   MHA = concat(head_1..head_h) W_o

A query whose keys are all blocked gets weights 0 and output 0 (instead of NaN), the
same rule as ``F.scaled_dot_product_attention``.

:func:`scaled_dot_product_attention_explicit` spells the formula out and returns the
weights (for attention maps); :class:`MultiHeadAttention` uses it when ``need_weights``
and otherwise the fused ``F.scaled_dot_product_attention``; the two agree to 1e-5.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AdditiveAttention", "MultiplicativeAttention", "BahdanauAttention",
           "LuongAttention", "masked_softmax", "scaled_dot_product_attention_explicit",
           "MultiHeadAttention"]


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over ``dim`` where boolean ``mask`` (broadcastable) is True.

    Blocked positions get exactly 0; a row with nothing allowed is all zeros.
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return weights.masked_fill(~mask, 0.0)  # all-blocked rows: NaN -> 0


def _attend(scores: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """scores (B, [T,] S), values (B, S, D), mask (B, S) -> context, weights."""
    squeeze = scores.dim() == 2
    if squeeze:
        scores = scores.unsqueeze(1)  # (B, 1, S)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError("mask must be boolean (True = real key)")
        mask = mask[:, None, :]  # (B, 1, S)
    weights = masked_softmax(scores, mask)  # (B, T, S)
    context = torch.bmm(weights, values)  # (B, T, D)
    if squeeze:
        return context.squeeze(1), weights.squeeze(1)
    return context, weights


class AdditiveAttention(nn.Module):
    """Bahdanau attention: ``score(s, h) = v^T tanh(W_s s + W_h h + b)``.

    ``forward(query, keys, values=None, mask=None) -> (context, weights)`` with
    ``query`` (B, Dq) or (B, T, Dq), ``keys`` (B, S, Dk), ``values`` (B, S, Dv)
    (default: the keys), ``mask`` (B, S) True for real source positions. Returns
    ``context`` (B, [T,] Dv) and ``weights`` (B, [T,] S).

    In a decoder loop the keys do not change between steps: project them once with
    :meth:`project_keys` and pass ``projected_keys``.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int | None = None):
        super().__init__()
        attn_dim = attn_dim or query_dim
        self.w_s = nn.Linear(query_dim, attn_dim, bias=False)
        self.w_h = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``W_h h + b`` for every key: (B, S, Dk) -> (B, S, A)."""
        return self.w_h(keys)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor | None = None,
                mask: Tensor | None = None, projected_keys: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        pk = self.project_keys(keys) if projected_keys is None else projected_keys  # (B,S,A)
        q = self.w_s(query)  # (B, [T,] A)
        if q.dim() == 2:
            scores = self.v(torch.tanh(q[:, None, :] + pk)).squeeze(-1)  # (B, S)
        else:
            scores = self.v(torch.tanh(q[:, :, None, :] + pk[:, None])).squeeze(-1)  # (B,T,S)
        return _attend(scores, keys if values is None else values, mask)


class MultiplicativeAttention(nn.Module):
    """Luong attention: ``general`` ``score(s, h) = s^T W h`` or ``dot`` ``s^T h``.

    Same call as :class:`AdditiveAttention`. ``W`` maps keys to the query size, so
    ``general`` works for any sizes; ``dot`` needs ``query_dim == key_dim``.
    """

    def __init__(self, query_dim: int, key_dim: int,
                 score: Literal["general", "dot"] = "general"):
        super().__init__()
        if score not in ("general", "dot"):
            raise ValueError(f"score must be 'general' or 'dot', got {score!r}")
        if score == "dot" and query_dim != key_dim:
            raise ValueError(f"dot attention needs query_dim == key_dim, got {query_dim} "
                             f"and {key_dim}; use score='general'")
        self.score = score
        self.w = nn.Linear(key_dim, query_dim, bias=False) if score == "general" else None

    def project_keys(self, keys: Tensor) -> Tensor:
        """``W h`` for every key (``general``), or the keys themselves (``dot``)."""
        return self.w(keys) if self.w is not None else keys

    def forward(self, query: Tensor, keys: Tensor, values: Tensor | None = None,
                mask: Tensor | None = None, projected_keys: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        pk = self.project_keys(keys) if projected_keys is None else projected_keys  # (B,S,Dq)
        if query.dim() == 2:
            scores = torch.bmm(pk, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        else:
            scores = torch.bmm(query, pk.transpose(1, 2))  # (B, T, S)
        return _attend(scores, keys if values is None else values, mask)


BahdanauAttention = AdditiveAttention
LuongAttention = MultiplicativeAttention


# ---------------------------------------------------------------------- scaled dot product

def _causal_mask(t: int, s: int, device: torch.device) -> Tensor:
    """(T, S) True where query i may see key j: j <= i (top-left aligned, as in SDPA)."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention_explicit(
        q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
        dropout: float = 0.0, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """``softmax(Q K^T / sqrt(d_k) + M) V`` computed step by step; returns (out, weights).

    ``q`` (..., T, d_k), ``k`` (..., S, d_k), ``v`` (..., S, d_v). ``mask`` broadcastable
    to (..., T, S): boolean (True = allowed) or float (added to the scores). ``causal``
    blocks keys j > i. ``dropout`` (a probability) is applied to the weights used for
    the output; the returned ``weights`` are the softmax before dropout, each row summing
    to 1 (or 0 if every key of that query is blocked). Same arguments and result as
    ``F.scaled_dot_product_attention(q, k, v, mask, dropout, causal, scale)``.
    """
    d_k = q.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (..., T, S)
    allowed = None
    if mask is not None:
        if mask.dtype == torch.bool:
            allowed = mask
        else:
            scores = scores + mask
    if causal:
        c = _causal_mask(q.shape[-2], k.shape[-2], q.device)
        allowed = c if allowed is None else allowed & c
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    blocked = scores.amax(dim=-1, keepdim=True) == float("-inf")  # every key blocked
    weights = weights.masked_fill(blocked, 0.0)  # NaN -> 0 for those rows only
    w = F.dropout(weights, dropout) if dropout > 0 else weights
    return torch.matmul(w, v), weights  # (..., T, d_v), (..., T, S)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections.

    ``forward(x, kv=None, key_mask=None, attn_mask=None, causal=False, need_weights=False)``:

    - ``x`` (B, T, d_model) gives the queries; ``kv`` (B, S, kdim) the keys and values
      (cross attention), default ``x`` (self attention);
    - ``key_mask`` (B, S) boolean, True for real keys (note: the opposite of
      ``torch.nn.MultiheadAttention``'s ``key_padding_mask``, which is True for padding);
    - ``attn_mask`` (T, S) or (B, T, S) or (B, h, T, S): boolean (True = allowed) or
      float (added); ``causal`` blocks keys j > i;
    - ``need_weights``: run the explicit path and return the weights (B, h, T, S), or
      averaged over heads (B, T, S) when ``average_weights``; otherwise the fused
      ``F.scaled_dot_product_attention`` runs and the weights are ``None``.

    Returns ``(out (B, T, d_model), weights or None)``.

    ``head_dim`` (default ``d_model // n_head``) sets the head size apart from
    ``d_model``: q/k/v then project to ``n_head * head_dim`` and ``out_proj`` maps that
    back to ``d_model`` (what head pruning leaves, :mod:`lmforge.compress.structured`).
    """

    def __init__(self, d_model: int, n_head: int, *, kdim: int | None = None,
                 vdim: int | None = None, bias: bool = True, dropout: float = 0.0,
                 head_dim: int | None = None):
        super().__init__()
        if head_dim is None:
            if d_model % n_head:
                raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}")
            head_dim = d_model // n_head
        elif head_dim < 1:
            raise ValueError(f"head_dim must be >= 1, got {head_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_head, self.head_dim = d_model, n_head, head_dim
        self.dropout = dropout
        inner = n_head * head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.k_proj = nn.Linear(kdim or d_model, inner, bias=bias)
        self.v_proj = nn.Linear(vdim or kdim or d_model, inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    @torch.no_grad()
    def load_torch_weights(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (its packed ``in_proj``
        is split into q, k, v). Returns ``self``."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_head \
                or mha.head_dim != self.head_dim:
            raise ValueError("torch module has a different d_model, number of heads or "
                             "head size")
        if mha.in_proj_weight is not None:
            wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for lin, b in zip((self.q_proj, self.k_proj, self.v_proj),
                              mha.in_proj_bias.chunk(3), strict=True):
                lin.bias.copy_(b)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.n_head, self.head_dim).transpose(1, 2)  # (B, h, N, d_h)

    def forward(self, x: Tensor, kv: Tensor | None = None, key_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False, average_weights: bool = True
                ) -> tuple[Tensor, Tensor | None]:
        kv = x if kv is None else kv
        B, T, _ = x.shape
        S = kv.shape[1]
        q = self._heads(self.q_proj(x))  # (B, h, T, d_h)
        k = self._heads(self.k_proj(kv))  # (B, h, S, d_h)
        v = self._heads(self.v_proj(kv))  # (B, h, S, d_h)
        mask = self._combine_masks(B, T, S, key_mask, attn_mask, causal, x)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            y, weights = scaled_dot_product_attention_explicit(q, k, v, mask, dropout=p)
            if average_weights:
                weights = weights.mean(dim=1)  # (B, T, S)
        else:
            only_causal = causal and key_mask is None and attn_mask is None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if only_causal else mask,
                                               dropout_p=p, is_causal=only_causal)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, h d_h)
        return self.out_proj(y), weights

    def forward_unpadded(self, x: Tensor, index: Tensor, key_mask: Tensor) -> Tensor:
        """Self-attention of the real tokens of a padded batch, given as rows.

        ``x`` (N, d_model) are the rows of the flattened (B·T) grid that ``index`` (N,)
        names, the True cells of ``key_mask`` (B, T) in row-major order. The q/k/v and
        output projections run on those N rows only; q, k and v are then laid on the
        (B, h, T, d_h) grid (zeros at padding) for the scores, which read the real keys
        only, as :meth:`forward` with ``key_mask`` does. Returns the (N, d_model) rows
        :meth:`forward` gives at the real tokens, for fewer multiplications when there
        is padding."""
        B, T = key_mask.shape

        def grid(rows: Tensor) -> Tensor:  # (N, h d_h) -> (B, h, T, d_h)
            cells = rows.new_zeros(B * T, rows.shape[-1]).index_copy(0, index, rows)
            return self._heads(cells.view(B, T, -1))

        q, k, v = grid(self.q_proj(x)), grid(self.k_proj(x)), grid(self.v_proj(x))
        mask = self._combine_masks(B, T, T, key_mask, None, False, x)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B * T, self.n_head * self.head_dim)
        return self.out_proj(y.index_select(0, index))  # (N, d_model)

    @staticmethod
    def _combine_masks(B: int, T: int, S: int, key_mask: Tensor | None,
                       attn_mask: Tensor | None, causal: bool, x: Tensor) -> Tensor | None:
        """One mask broadcastable to (B, h, T, S): boolean, or float if attn_mask is."""
        allowed: Tensor | None = None
        if key_mask is not None:
            if key_mask.dtype != torch.bool or tuple(key_mask.shape) != (B, S):
                raise ValueError(f"key_mask must be a boolean (B, S) = {(B, S)} tensor, "
                                 f"got {key_mask.dtype} {tuple(key_mask.shape)}")
            allowed = key_mask[:, None, None, :]
        if causal:
            c = _causal_mask(T, S, x.device)
            allowed = c if allowed is None else allowed & c
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = attn_mask[:, None]  # (B, 1, T, S)
        if attn_mask is None:
            return allowed
        if attn_mask.dtype == torch.bool:
            return attn_mask if allowed is None else attn_mask & allowed
        if allowed is None:
            return attn_mask.to(x.dtype)
        return attn_mask.to(x.dtype).masked_fill(~allowed, float("-inf"))
