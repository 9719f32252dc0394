r"""The encoder-decoder Transformer of Vaswani et al. (2017), "Attention Is All You Need".

Written by hand because it is what lmforge teaches; every shape is commented. The
attention heads are :class:`lmforge.nn.attention.MultiHeadAttention` and the positions
come from :mod:`lmforge.nn.positional`.

Notation: source tokens :math:`x_1..x_S`, target tokens :math:`y_1..y_T`, model width
:math:`d`, :math:`h` heads of size :math:`d_h = d / h`. ``tgt_in = [bos, y_1 .. y_{T-1}]``
(teacher forcing: the decoder reads the true previous token) and the labels are
``tgt_out = [y_1 .. y_{T-1}, eos]``.

Scaled dot-product and multi-head attention::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h) + M) V
    head_i   = Attention(Q W_q^i, K W_k^i, V W_v^i)          W_q^i, W_k^i, W_v^i: d -> d_h
    MHA(Q, K, V) = concat(head_1 .. head_h) W_o              W_o: d -> d

``M`` is 0 where a key may be seen and -inf where it may not: source padding (in the
encoder and in cross attention) and, in the decoder's self-attention, the future
(``M_ij = -inf`` for ``j > i``, the causal mask).

Embeddings (shared source/target table and tied output optional)::

    x_0 = Dropout(sqrt(d) * E_src[x] + PE[0..S-1])           (B, S, d)
    y_0 = Dropout(sqrt(d) * E_tgt[tgt_in] + PE[0..T-1])      (B, T, d)

with the sinusoidal ``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] =
cos(pos / 10000^(2i/d))`` or a learned table.

Position-wise feed-forward network, the same at every position::

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2        W_1: d -> d_ff (expand), W_2: d_ff -> d

(``gelu`` replaces the ``max(0, .)`` when ``activation='gelu'``). Some tutorials write
``W_1: d_ff -> d`` and ``W_2: d -> d_ff``; that only type-checks when ``d_ff = d``.

Encoder layer (``N`` of them), post-LN as in the paper (``norm_first=False``)::

    x = LayerNorm(x + Dropout(MHA(x, x, x; source padding masked)))
    x = LayerNorm(x + Dropout(FFN(x)))

Decoder layer (``N`` of them), with the encoder output ``m`` (the *memory*)::

    y = LayerNorm(y + Dropout(MHA(y, y, y; causal mask)))          masked self-attention
    y = LayerNorm(y + Dropout(MHA(y, m, m; source padding masked))) cross attention
    y = LayerNorm(y + Dropout(FFN(y)))

Pre-LN (``norm_first=True``, Xiong et al. 2020) normalises the input of each sublayer
instead, ``x = x + Dropout(Sublayer(LayerNorm(x)))``, so the residual stream is never
normalised; it then needs a final ``LayerNorm`` after each stack (``final_norm``, on by
default with pre-LN; ``torch.nn.Transformer`` adds it in both modes).

Output: ``logits = y_N W_out`` with ``W_out = E_tgt^T`` when ``tie_output``.

Training: cross-entropy of ``tgt_out`` with optional label smoothing (Szegedy et al.
2016): the target distribution is ``q = (1 - eps) onehot(y) + eps / V``, so
``loss = (1 - eps) * NLL + eps * mean_k(-log p_k)`` (:class:`Seq2SeqLMObjective`).

Decoding is incremental: the decoder's self-attention keeps the keys and values of the
positions already generated (:class:`EncoderDecoderCache`), and each layer's
cross-attention keys and values ``m W_k``, ``m W_v`` are computed once per source, so
each new token costs one attention row per layer. Greedy search and beam search with the
GNMT length penalty ``score = log P(Y|X) / ((5 + |Y|) / 6)^alpha`` run on top
(:mod:`lmforge.models.beam`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention
from ..nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from . import register_model
from .base import PretrainedMixin, check_ids, check_special_ids, embed_ids, require_vocab

if TYPE_CHECKING:
    from .beam import Hypothesis

__all__ = ["TransformerConfig", "Transformer", "EncoderDecoderCache", "Seq2SeqLMObjective",
           "FeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder"]


@dataclass
class TransformerConfig:
    """Architecture of a :class:`Transformer`. The defaults are the paper's base model."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    src_vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    tgt_vocab_size: int | None = None
    d_model: int = 512
    n_head: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    activation: Literal["relu", "gelu"] = "relu"
    norm_first: bool = False  # False: post-LN (the paper); True: pre-LN
    final_norm: bool | None = None  # LayerNorm after each stack; None: = norm_first
    norm_eps: float = 1e-5
    share_embeddings: bool = False  # one table for source and target (same vocabulary)
    tie_output: bool = True  # output projection = target embedding
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_seq_len: int = 512
    scale_embeddings: bool = True  # multiply embeddings by sqrt(d_model)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        if self.final_norm is None:
            self.final_norm = self.norm_first
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_head",
                     "n_encoder_layers", "n_decoder_layers", "d_ff", "max_seq_len"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', "
                             f"got {self.positional!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size \
                and None not in (self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"share_embeddings needs one vocabulary, got src_vocab_size="
                             f"{self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}")
        check_special_ids(self, "src_vocab_size", "tgt_vocab_size")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# ---------------------------------------------------------------------- cache

class EncoderDecoderCache:
    """Decoder state for incremental decoding of ``B`` rows.

    - ``self_k``, ``self_v``: (L, B, h, max_len, d_h) preallocated keys/values of the
      decoder's self-attention; the first ``length`` positions are filled;
    - ``cross_k``, ``cross_v``: (L, B, h, S, d_h) each layer's projection of the memory,
      computed once;
    - ``src_mask``: (B, S) True for real source tokens.
    """

    def __init__(self, self_k: Tensor, self_v: Tensor, cross_k: Tensor, cross_v: Tensor,
                 src_mask: Tensor):
        self.self_k, self.self_v = self_k, self_v
        self.cross_k, self.cross_v = cross_k, cross_v
        self.src_mask = src_mask
        self.max_len = self_k.shape[3]
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new ``k, v`` (B, h, T, d_h) after the filled positions; return all
        keys and values so far, (B, h, length + T, d_h)."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions; {end} needed")
        self.self_k[layer, :, :, start:end] = k
        self.self_v[layer, :, :, start:end] = v
        return self.self_k[layer, :, :, :end], self.self_v[layer, :, :, :end]

    def reorder(self, index: Tensor, cross: bool = True) -> None:
        """Keep (or repeat) batch rows ``index``. ``cross=False`` leaves the cross-attention
        keys/values alone (valid when each row keeps its source, as in beam search)."""
        self.self_k = self.self_k.index_select(1, index)
        self.self_v = self.self_v.index_select(1, index)
        if cross:
            self.cross_k = self.cross_k.index_select(1, index)
            self.cross_v = self.cross_v.index_select(1, index)
            self.src_mask = self.src_mask.index_select(0, index)


# ---------------------------------------------------------------------- layers

class FeedForward(nn.Module):
    """``FFN(x) = act(x W_1 + b_1) W_2 + b_2`` with W_1: d -> d_ff and W_2: d_ff -> d."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)  # expand
        self.linear2 = nn.Linear(d_ff, d_model)  # project back
        self.act = F.relu if activation == "relu" else F.gelu
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.drop(self.act(self.linear1(x))))  # (B, T, d)


def _heads(t: Tensor, n_head: int) -> Tensor:
    B, N, d = t.shape
    return t.view(B, N, n_head, d // n_head).transpose(1, 2)  # (B, h, N, d_h)


def _merge(t: Tensor) -> Tensor:
    B, h, N, d_h = t.shape
    return t.transpose(1, 2).reshape(B, N, h * d_h)  # (B, N, d)


def _attend_cached(mha: MultiHeadAttention, x: Tensor, k: Tensor, v: Tensor,
                   mask: Tensor | None) -> Tensor:
    """``mha`` with the keys/values (B, h, S, d_h) already projected (from a cache)."""
    q = _heads(mha.q_proj(x), mha.n_head)  # (B, h, T, d_h)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                       dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(_merge(y))  # (B, T, d)


class _Residual(nn.Module):
    """Shared wiring of a sublayer: post-LN ``LN(x + drop(f(x)))`` or pre-LN
    ``x + drop(f(LN(x)))``."""

    norm_first: bool

    def residual(self, x: Tensor, f: Callable[[Tensor], Tensor], norm: nn.LayerNorm,
                 drop: nn.Dropout) -> Tensor:
        if self.norm_first:
            return x + drop(f(norm(x)))
        return norm(x + drop(f(x)))


class EncoderLayer(_Residual):
    """Self-attention then FFN, each with a residual connection and LayerNorm."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_head, dropout=cfg.dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.drop2 = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, src_mask: Tensor | None) -> Tensor:
        x = self.residual(x, lambda h: self.self_attn(h, key_mask=src_mask)[0],
                          self.norm1, self.drop1)
        return self.residual(x, self.ffn, self.norm2, self.drop2)  # (B, S, d)


class DecoderLayer(_Residual):
    """Masked self-attention, cross attention to the memory, then FFN."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_head, dropout=cfg.dropout)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_head, dropout=cfg.dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.norm3 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.drop2 = nn.Dropout(cfg.dropout)
        self.drop3 = nn.Dropout(cfg.dropout)

    def _self_attention(self, h: Tensor, tgt_mask: Tensor | None, causal: bool,
                        cache: EncoderDecoderCache | None, layer: int) -> Tensor:
        if cache is None:
            return self.self_attn(h, key_mask=tgt_mask, causal=causal)[0]
        mha, T = self.self_attn, h.shape[1]
        k = _heads(mha.k_proj(h), mha.n_head)  # (B, h, T, d_h), the new positions only
        v = _heads(mha.v_proj(h), mha.n_head)
        start = cache.length
        k, v = cache.update(layer, k, v)  # (B, h, start + T, d_h)
        mask = None
        if T > 1:  # query i sits at position start + i and sees keys j <= start + i
            q_pos = torch.arange(start, start + T, device=h.device)
            mask = torch.arange(start + T, device=h.device)[None, :] <= q_pos[:, None]
        return _attend_cached(mha, h, k, v, mask)

    def _cross_attention(self, h: Tensor, memory: Tensor | None, src_mask: Tensor | None,
                         cache: EncoderDecoderCache | None, layer: int) -> Tensor:
        if cache is None:
            return self.cross_attn(h, kv=memory, key_mask=src_mask)[0]
        return _attend_cached(self.cross_attn, h, cache.cross_k[layer], cache.cross_v[layer],
                              cache.src_mask[:, None, None, :])

    def forward(self, y: Tensor, memory: Tensor | None, src_mask: Tensor | None,
                tgt_mask: Tensor | None = None, causal: bool = True,
                cache: EncoderDecoderCache | None = None, layer: int = 0) -> Tensor:
        y = self.residual(y, lambda h: self._self_attention(h, tgt_mask, causal, cache, layer),
                          self.norm1, self.drop1)
        y = self.residual(y, lambda h: self._cross_attention(h, memory, src_mask, cache, layer),
                          self.norm2, self.drop2)
        return self.residual(y, self.ffn, self.norm3, self.drop3)  # (B, T, d)


class Encoder(nn.Module):
    """``N`` encoder layers (+ a final LayerNorm): embedded source (B, S, d) -> memory."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.final_norm else None

    def forward(self, x: Tensor, src_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.norm(x) if self.norm is not None else x  # (B, S, d)


class Decoder(nn.Module):
    """``N`` decoder layers (+ a final LayerNorm): embedded target (B, T, d) -> states."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.final_norm else None

    def forward(self, y: Tensor, memory: Tensor | None, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None, causal: bool = True,
                cache: EncoderDecoderCache | None = None) -> Tensor:
        for i, layer in enumerate(self.layers):
            y = layer(y, memory, src_mask, tgt_mask, causal, cache, i)
        return self.norm(y) if self.norm is not None else y  # (B, T, d)


# ---------------------------------------------------------------------- model

class Transformer(PretrainedMixin, nn.Module):
    """Encoder-decoder Transformer; ``forward(src, tgt_in) -> logits (B, T, tgt_vocab)``.

    Masks follow lmforge's convention: boolean, **True for real tokens**. ``src_mask``
    (B, S) defaults to ``src != pad_id``; ``tgt_mask`` (B, T) optionally masks target
    padding as keys (not needed for right-padded targets: the causal mask already hides
    what comes after a position).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        require_vocab(config, "src_vocab_size", "tgt_vocab_size")
        self.config = cfg = config
        self.src_embed = nn.Embedding(cfg.src_vocab_size, cfg.d_model)
        self.tgt_embed = self.src_embed if cfg.share_embeddings else \
            nn.Embedding(cfg.tgt_vocab_size, cfg.d_model)
        if cfg.positional == "sinusoidal":
            self.src_pos: nn.Module = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_seq_len)
            self.tgt_pos: nn.Module = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_seq_len)
        else:
            self.src_pos = LearnedPositionalEmbedding(cfg.max_seq_len, cfg.d_model)
            self.tgt_pos = LearnedPositionalEmbedding(cfg.max_seq_len, cfg.d_model)
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        self.reset_parameters()
        if cfg.tie_output:
            self.lm_head.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """Xavier-uniform linear weights, zero biases; embeddings ~ N(0, d^-1/2), so that
        ``sqrt(d) * E[x]`` has unit scale and the tied output starts small."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, self.config.d_model ** -0.5)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Trainable parameters, tied or shared tensors counted once."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            tables = {id(m.weight): m.weight.numel() for m in (self.src_embed, self.tgt_embed)}
            for m in (self.src_pos, self.tgt_pos):
                if isinstance(m, nn.Embedding):
                    tables[id(m.weight)] = m.weight.numel()
            n -= sum(tables.values())
        return n

    # ------------------------------------------------------------------ pieces

    def source_mask(self, src: Tensor) -> Tensor:
        """(B, S) True for real source tokens (``src != pad_id``)."""
        return src != self.config.pad_id

    def _check_mask(self, src: Tensor, src_mask: Tensor | None) -> Tensor:
        check_ids(src, "src")
        mask = self.source_mask(src) if src_mask is None else src_mask
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(src.shape):
            raise ValueError(f"src_mask must be a boolean tensor of shape {tuple(src.shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every source row needs at least one real (non-pad) token")
        return mask

    def _embed(self, table: nn.Embedding, pos: nn.Module, ids: Tensor, start: int = 0,
               name: str = "src") -> Tensor:
        check_ids(ids, name)
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)  # (T,)
        vocab = "src_vocab_size" if name == "src" else "tgt_vocab_size"
        return self.drop(embed_ids(table, ids, name, vocab) * self.embed_scale + pos(positions))  # (B, T, d)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Memory (B, S, d) for source ids ``src`` (B, S)."""
        mask = self._check_mask(src, src_mask)
        return self.encoder(self._embed(self.src_embed, self.src_pos, src), mask)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor | None,
               tgt_mask: Tensor | None = None, causal: bool = True) -> Tensor:
        """Decoder states (B, T, d) (before the vocabulary projection) for ``tgt_in`` (B, T).

        ``causal=False`` drops the causal mask (each position then sees the whole
        target: only for experiments, teacher forcing would read the answer).
        """
        y = self._embed(self.tgt_embed, self.tgt_pos, tgt_in, name="tgt_in")
        return self.decoder(y, memory, src_mask, tgt_mask, causal)

    def forward(self, src: Tensor, tgt_in: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, tgt_vocab) for ``tgt_in`` = BOS + target."""
        src_mask = self._check_mask(src, src_mask)
        memory = self.encoder(self._embed(self.src_embed, self.src_pos, src), src_mask)
        return self.lm_head(self.decode(tgt_in, memory, src_mask, tgt_mask))

    # ------------------------------------------------------------------ incremental

    def new_cache(self, memory: Tensor, src_mask: Tensor, max_len: int | None = None
                  ) -> EncoderDecoderCache:
        """A cache for decoding up to ``max_len`` target positions against ``memory``
        (B, S, d); computes every layer's cross-attention keys/values once."""
        cfg = self.config
        max_len = max_len or cfg.max_seq_len
        if max_len > cfg.max_seq_len:
            raise ValueError(f"max_len {max_len} exceeds max_seq_len {cfg.max_seq_len}")
        B, S, _ = memory.shape
        L, h, d_h = cfg.n_decoder_layers, cfg.n_head, cfg.head_dim
        self_k = memory.new_zeros(L, B, h, max_len, d_h)
        cross_k = memory.new_empty(L, B, h, S, d_h)
        cross_v = memory.new_empty(L, B, h, S, d_h)
        for i, layer in enumerate(self.decoder.layers):
            mha = layer.cross_attn
            cross_k[i] = _heads(mha.k_proj(memory), h)  # (B, h, S, d_h)
            cross_v[i] = _heads(mha.v_proj(memory), h)
        return EncoderDecoderCache(self_k, torch.zeros_like(self_k), cross_k, cross_v,
                                   src_mask)

    def decode_step(self, tgt_new: Tensor, cache: EncoderDecoderCache) -> Tensor:
        """Logits (B, T, V) for the next target tokens ``tgt_new`` (B, T) (usually T = 1),
        which sit after the ``cache.length`` positions already decoded."""
        start = cache.length
        if start + tgt_new.shape[1] > self.config.max_seq_len:
            raise ValueError(f"target length {start + tgt_new.shape[1]} exceeds "
                             f"max_seq_len {self.config.max_seq_len}")
        y = self._embed(self.tgt_embed, self.tgt_pos, tgt_new, start, "tgt_in")
        y = self.decoder(y, None, None, cache=cache)
        cache.length = start + tgt_new.shape[1]
        return self.lm_head(y)

    def _start(self, src: Tensor, src_mask: Tensor | None, max_len: int, repeat: int = 1
               ) -> EncoderDecoderCache:
        if max_len < 1 or max_len > self.config.max_seq_len:
            raise ValueError(f"max_len must be in [1, max_seq_len={self.config.max_seq_len}]"
                             f", got {max_len}")
        mask = self._check_mask(src, src_mask)
        memory = self.encoder(self._embed(self.src_embed, self.src_pos, src), mask)
        if repeat > 1:  # beams: rows b*K .. b*K + K-1 belong to source b
            memory = memory.repeat_interleave(repeat, dim=0)
            mask = mask.repeat_interleave(repeat, dim=0)
        return self.new_cache(memory, mask, max_len)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, src_mask: Tensor | None = None, max_len: int = 50,
                      no_repeat_ngram_size: int = 0) -> Tensor:
        """Most likely next token at every step -> (B, L) ids after BOS, each row ending
        with EOS (unless cut at ``max_len``) and padded with ``pad_id`` after it."""
        from .beam import greedy_search

        cfg = self.config
        cache = self._start(src, src_mask, max_len)
        return greedy_search(lambda y: self.decode_step(y[:, None], cache)[:, -1],
                             src.shape[0], max_len=max_len, bos_id=cfg.bos_id,
                             eos_id=cfg.eos_id, pad_id=cfg.pad_id,
                             banned_ids=(cfg.pad_id, cfg.bos_id),
                           no_repeat_ngram_size=no_repeat_ngram_size, device=src.device)

    @torch.no_grad()
    def beam_search(self, src: Tensor, src_mask: Tensor | None = None, beam_size: int = 4,
                    max_len: int = 50, alpha: float = 0.6, n_best: int = 1,
                    no_repeat_ngram_size: int = 0
                    ) -> list[list[Hypothesis]]:
        """Beam search with the GNMT length penalty; for each source the ``n_best``
        hypotheses, best first (rules in :mod:`lmforge.models.beam`)."""
        from .beam import beam_search

        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        cfg = self.config
        cache = self._start(src, src_mask, max_len, repeat=beam_size)
        return beam_search(lambda y: self.decode_step(y[:, None], cache)[:, -1],
                           lambda rows: cache.reorder(rows, cross=False),
                           src.shape[0], beam_size=beam_size, max_len=max_len,
                           bos_id=cfg.bos_id, eos_id=cfg.eos_id, alpha=alpha, n_best=n_best,
                           banned_ids=(cfg.pad_id, cfg.bos_id),
                           no_repeat_ngram_size=no_repeat_ngram_size, device=src.device)

    # ------------------------------------------------------------------ interop

    @torch.no_grad()
    def load_torch_transformer(self, tm: nn.Transformer) -> Transformer:
        """Copy the encoder/decoder layer weights of a ``torch.nn.Transformer`` (which has
        no embeddings or output projection). Returns ``self``.

        The shapes, ``norm_first`` and the presence of the final norms must match
        (``torch.nn.Transformer`` always has them: use ``final_norm=True``).
        """
        cfg = self.config
        enc, dec = tm.encoder.layers, tm.decoder.layers
        got = {"n_encoder_layers": len(enc), "n_decoder_layers": len(dec),
               "d_model": enc[0].self_attn.embed_dim, "n_head": enc[0].self_attn.num_heads,
               "d_ff": enc[0].linear1.out_features, "norm_first": enc[0].norm_first,
               "final_norm": tm.encoder.norm is not None}
        for name, value in got.items():
            if getattr(cfg, name) != value:
                raise ValueError(f"torch model has {name}={value}, config has "
                                 f"{getattr(cfg, name)}")

        def copy(dst: nn.Module, src: nn.Module) -> None:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)

        for ours, theirs in zip(self.encoder.layers, enc, strict=True):
            ours.self_attn.load_torch_weights(theirs.self_attn)
            copy(ours.ffn.linear1, theirs.linear1)
            copy(ours.ffn.linear2, theirs.linear2)
            copy(ours.norm1, theirs.norm1)
            copy(ours.norm2, theirs.norm2)
        for ours, theirs in zip(self.decoder.layers, dec, strict=True):
            ours.self_attn.load_torch_weights(theirs.self_attn)
            ours.cross_attn.load_torch_weights(theirs.multihead_attn)
            copy(ours.ffn.linear1, theirs.linear1)
            copy(ours.ffn.linear2, theirs.linear2)
            copy(ours.norm1, theirs.norm1)
            copy(ours.norm2, theirs.norm2)
            copy(ours.norm3, theirs.norm3)
        if cfg.final_norm:
            copy(self.encoder.norm, tm.encoder.norm)
            copy(self.decoder.norm, tm.decoder.norm)
        return self


# ---------------------------------------------------------------------- objective

class Seq2SeqLMObjective:
    """Teacher-forced cross-entropy with optional label smoothing, for the trainer.

    A batch is ``{"src": (B, S), "tgt_in": (B, T), "tgt_out": (B, T)}`` plus optionally
    ``"src_lengths"`` (B,) (else the source mask is ``src != pad_id``), as made by
    :func:`lmforge.models.rnn.collate_pairs`. Labels equal to ``pad_id`` are ignored.
    With ``label_smoothing = eps`` the target is ``(1 - eps) onehot + eps / V``; the
    unsmoothed NLL is then logged as the metric ``nll`` (its exp is the perplexity).
    """

    name = "seq2seq_lm"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, batch: dict[str, Any]):
        pad = model.config.pad_id
        src = batch["src"]
        mask = None
        if batch.get("src_lengths") is not None:
            lengths = torch.as_tensor(batch["src_lengths"], device=src.device)
            mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths[:, None]
        logits = model(src, batch["tgt_in"], src_mask=mask)  # (B, T, V)
        y = batch["tgt_out"].reshape(-1)
        flat = logits.float().reshape(-1, logits.size(-1))
        loss = F.cross_entropy(flat, y, ignore_index=pad, label_smoothing=self.label_smoothing)
        metrics = {}
        if self.label_smoothing > 0:
            metrics["nll"] = F.cross_entropy(flat.detach(), y, ignore_index=pad)
        n = (y != pad).sum()
        return loss, metrics, int(n) if y.device.type == "cpu" else n

    def __repr__(self) -> str:
        return f"Seq2SeqLMObjective(label_smoothing={self.label_smoothing})"


register_model("transformer", Transformer, TransformerConfig)
