r"""A config-driven decoder-only Transformer: GPT-2 style and Llama style.

Written by hand because it is what lmforge teaches; every shape is commented.

Notation: :math:`x \in \mathbb{R}^{T \times d}` is the residual stream, :math:`h` heads of
size :math:`d_h = d / h` (or ``head_dim`` when set, e.g. after head pruning: then
:math:`W_q` is :math:`d \times h d_h` and :math:`W_o` is :math:`h d_h \times d`),
:math:`h_{kv}` key/value heads (grouped-query attention shares each key/value head among
:math:`h / h_{kv}` query heads).

Embedding::

    x_0 = E[tokens] (+ P[positions]   GPT-2 only: learned absolute positions)

Each of the L blocks is pre-norm with residual connections::

    x = x + Attn(Norm(x))
    x = x + MLP(Norm(x))

Causal self-attention, per head::

    q = x W_q,  k = x W_k,  v = x W_v          (fused into one matmul: x W_qkv)
    q, k = RoPE(q), RoPE(k)                     (Llama style only)
    A = softmax(q k^T / sqrt(d_h) + M) v,   M_ij = 0 if j <= i else -inf
    Attn(x) = concat(A_1..A_h) W_o

RoPE rotates each pair of channels (i, i + d_h/2) at position p by angle
:math:`p \theta^{-2i/d_h}`, so :math:`q_m \cdot k_n` depends only on :math:`m - n`.

MLP::

    GPT-2:  MLP(x) = GELU(x W_1 + b_1) W_2 + b_2                  (d_ff = 4d)
    Llama:  MLP(x) = (SiLU(x W_gate) * (x W_up)) W_down           (SwiGLU, d_ff ~ 8d/3)

Norm: LayerNorm (GPT-2) :math:`\gamma (x-\mu)/\sqrt{\sigma^2+\epsilon} + \beta`, or RMSNorm
(Llama) :math:`\gamma x / \sqrt{\mathrm{mean}(x^2)+\epsilon}`.

Output: ``logits = Norm(x_L) E^T`` when embeddings are tied (GPT-2), else a separate
``lm_head``.

Initialisation (GPT-2): every weight ~ N(0, 0.02); the two projections that write into
the residual stream (``W_o`` and the MLP's output) ~ N(0, 0.02 / sqrt(2L)), so the
variance of the stream stays O(1) however deep the model is.

Attention runs through ``F.scaled_dot_product_attention`` (fused kernels). Decoding uses
a preallocated :class:`KVCache`, so each new token costs one attention row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import nn

from ..errors import ModelInputError
from ..nn.positional import apply_rope, rope_tables
from . import register_model
from .base import PretrainedMixin, check_dims, check_ids, check_mask, embed_ids, require_vocab

_STYLE_DEFAULTS = {
    "gpt2": {"pos": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True,
             "tie_embeddings": True},
    "llama": {"pos": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
              "tie_embeddings": False},
}


@dataclass
class GPTConfig:
    """Architecture of a :class:`GPT`. Fields left ``None`` take the ``style`` default."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    style: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int | None = None  # grouped-query attention; None = n_head
    d_model: int = 384
    d_ff: int | None = None  # None: 4*d (gelu) or 8d/3 rounded up to 64 (swiglu)
    head_dim: int | None = None  # None: d_model // n_head (pruned heads keep theirs)
    max_seq_len: int = 256
    dropout: float = 0.0
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    pos: Literal["learned", "rope"] | None = None
    norm: Literal["layernorm", "rmsnorm"] | None = None
    mlp: Literal["gelu", "swiglu"] | None = None
    bias: bool | None = None
    tie_embeddings: bool | None = None

    def __post_init__(self) -> None:
        for key, value in _STYLE_DEFAULTS[self.style].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if self.mlp == "gelu" else \
                64 * math.ceil(8 * self.d_model / 3 / 64)
        derived = self.head_dim is None
        check_dims(self, ("n_layer", "n_head", "n_kv_head", "d_model", "d_ff", "max_seq_len")
                   + (() if derived else ("head_dim",)), heads_divide=derived)
        if derived:
            self.head_dim = self.d_model // self.n_head
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by "
                             f"n_kv_head={self.n_kv_head}")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError("RoPE needs an even head size (head_dim, default d_model / n_head)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


class KVCache:
    """Preallocated keys and values for every layer: ``(L, B, h_kv, S_max, d_h)``.

    ``length`` is the number of positions filled. ``attention_mask`` (B, S_max) marks
    real tokens (1) and left padding (0) of everything written so far.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.attention_mask = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store ``k, v`` (B, h_kv, T, d_h) at the current position; return all so far."""
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search, finished sequences)."""
        self.k = self.k[:, index]
        self.v = self.v[:, index]
        self.attention_mask = self.attention_mask[index]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim,
                             bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=cfg.bias)
        self.proj.residual_out = True
        self.dropout = cfg.dropout

    def forward(self, x, rope, mask, cache: KVCache | None, layer: int,
                weights_out: list | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim,
             self.n_kv_head * self.head_dim], dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, h, T, d_h)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, h_kv, T, d_h)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k.to(cache.k.dtype), v.to(cache.v.dtype))
            k, v = k.to(q.dtype), v.to(q.dtype)
        if weights_out is not None:  # explicit softmax(q k^T / sqrt(d_h) + M) v, for pictures
            from ..nn.attention import scaled_dot_product_attention_explicit

            rep = self.n_head // self.n_kv_head  # query head j uses key/value head j // rep
            y, w = scaled_dot_product_attention_explicit(
                q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1),
                mask=mask, causal=mask is None and T > 1)
            weights_out.append(w)  # (B, h, T, S)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=self.n_kv_head != self.n_head)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gated = cfg.mlp == "swiglu"
        self.up = nn.Linear(cfg.d_model, cfg.d_ff * (2 if self.gated else 1), bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.down.residual_out = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x), approximate="tanh"))


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask, cache, layer, weights_out=None):
        x = x + self.drop(self.attn(self.norm1(x), rope, mask, cache, layer, weights_out))
        return x + self.drop(self.mlp(self.norm2(x)))


class GPT(PretrainedMixin, nn.Module):
    """Decoder-only language model; ``forward`` returns next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = cfg = config
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if cfg.pos == "rope":
            cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, std) everywhere, N(0, std/sqrt(2L)) on residual outputs."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                s = std / math.sqrt(2 * self.config.n_layer) \
                    if getattr(module, "residual_out", False) else std
                nn.init.normal_(module.weight, 0.0, s)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe else 0)
        return n

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """A preallocated KV cache for ``batch_size`` sequences of up to ``max_len``."""
        max_len = max_len or self.config.max_seq_len
        if max_len > self.config.max_seq_len:
            raise ValueError(f"cache length {max_len} exceeds max_seq_len "
                             f"{self.config.max_seq_len}")
        dtype = dtype or self.wte.weight.dtype
        return KVCache(self.config, batch_size, max_len, self.wte.weight.device, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, last_only: bool = False,
                output_attentions: bool = False):
        """Logits for ``input_ids`` (B, T).

        ``attention_mask`` (B, T), 1 for real tokens and 0 for padding (left or right);
        with a ``cache`` it covers only the new tokens and is appended to the cache's mask.
        ``last_only`` returns logits of the final position only, (B, 1, V).
        ``output_attentions`` computes attention explicitly (slower) and returns
        ``(logits, [weights (B, h, T, S) per layer])``.
        """
        x, weights = self._residual(input_ids, attention_mask, cache, output_attentions)
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        return (logits, weights) if output_attentions else logits

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The final normalised hidden states (B, T, d) that the LM head reads (a task
        head's input; ``token_type_ids`` is accepted for the encoders' signature and
        must be None)."""
        if token_type_ids is not None:
            raise ModelInputError("a GPT has no token types; give sentence pairs as one text")
        return self.norm_f(self._residual(input_ids, attention_mask, None, False)[0])

    def _residual(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  cache: KVCache | None, output_attentions: bool):
        """The residual stream after the last block (B, T, d), and the attention weights
        when asked."""
        B, T = check_ids(input_ids)
        check_mask(attention_mask, (B, T))
        if cache is not None and cache.k.shape[1] != B:
            raise ModelInputError(f"input_ids has batch size {B} but the cache holds "
                                  f"{cache.k.shape[1]} rows")
        start = cache.length if cache is not None else 0
        end = start + T
        # Key validity over all positions seen so far (B, S).
        if cache is not None:
            if attention_mask is not None:
                cache.attention_mask[:, start:end] = attention_mask.bool()
            key_valid = cache.attention_mask[:, :end]
        else:
            key_valid = attention_mask.bool() if attention_mask is not None else None
        # (under torch.export a graph cannot branch on values: the mask always applies)
        padded = key_valid is not None and (torch.compiler.is_exporting()
                                            or not bool(key_valid.all()))

        # Positions: count only real tokens, so left padding does not shift them.
        # A cache may hold more columns than max_seq_len when rows start at different
        # columns (the serving engine's slots): the limit is on positions.
        if padded:
            pos_all = (key_valid.long().cumsum(-1) - 1).clamp(min=0)
            positions = pos_all[:, start:end]  # (B, T)
            longest = int(pos_all[:, -1].max()) + 1 if end > self.config.max_seq_len else 0
        else:
            positions = torch.arange(start, end, device=input_ids.device).expand(B, T)
            longest = end
        if longest > self.config.max_seq_len:
            raise ModelInputError(f"sequence length {longest} exceeds max_seq_len "
                                  f"{self.config.max_seq_len}")

        # Attention mask (B, 1, T, S): causal, and never attend to padding. A query may
        # always see itself so that padding rows stay finite.
        mask = None
        if padded or (T > 1 and start > 0):
            q_pos = torch.arange(start, end, device=input_ids.device)
            k_pos = torch.arange(end, device=input_ids.device)
            allowed = k_pos[None, :] <= q_pos[:, None]  # (T, S)
            if padded:
                allowed = allowed[None] & key_valid[:, None, :]
                allowed = allowed | (k_pos[None, None, :] == q_pos[None, :, None])
            mask = allowed[:, None] if allowed.dim() == 3 else allowed

        x = embed_ids(self.wte, input_ids)  # (B, T, d)
        if self.wpe is not None:
            x = x + self.wpe(positions)
        x = self.drop(x)
        rope = None
        if self.config.pos == "rope":
            rope = (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])
        weights: list[torch.Tensor] | None = [] if output_attentions else None
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, cache, i, weights)
        if cache is not None:
            cache.length = end
        return x, weights


register_model("gpt", GPT, GPTConfig)
