r"""T5: the text-to-text encoder-decoder Transformer (Raffel et al. 2020), v1.0 and v1.1.

Written by hand because it is what lmforge teaches; every shape is commented.

Notation: :math:`x \in \mathbb{R}^{T \times d}` is the residual stream, :math:`h` heads of
size :math:`d_{kv}` (T5 does not tie :math:`d_{kv}` to :math:`d/h`), :math:`E` the token
embedding shared by the encoder, the decoder and (v1.0) the output layer.

Norm: T5's "LayerNorm" is an RMSNorm, with no mean subtraction and no bias::

    Norm(x) = g * x / sqrt(mean(x^2) + eps)

Every block is pre-norm with residual connections; the encoder block is::

    x = x + SelfAttn(Norm(x), bias_enc)
    x = x + FFN(Norm(x))

and the decoder block adds cross attention to the encoder output :math:`m`::

    y = y + SelfAttn(Norm(y), bias_dec + causal mask)
    y = y + CrossAttn(Norm(y), m)
    y = y + FFN(Norm(y))

each stack ending with one more ``Norm``. Attention, per head, **without** the usual
1/sqrt(d_kv) scaling (T5 folds it into the initialisation of W_q)::

    A = softmax(q k^T + B + M) v,     q = x W_q, k = x W_k, v = x W_v
    Attn(x) = concat(A_1..A_h) W_o

``M`` is 0 where attention is allowed and very negative at padding (and, in the decoder,
at future positions). ``B`` is the **relative position bias**: one learned scalar per
head and bucket of the relative position ``r = j - i`` (key minus query)::

    B[head, i, j] = b[bucket(j - i), head]

with T5's buckets (:func:`lmforge.nn.positional.relative_position_bucket`): of ``n``
buckets, half hold the exact small distances and half grow logarithmically up to
``max_distance``; the encoder is bidirectional (the sign of ``r`` picks one half of the
buckets), the decoder unidirectional (all future keys share bucket 0, and are masked
anyway). ``B`` is computed once, by the first layer of each stack, and shared by all the
later layers of that stack; cross attention has no position bias. There are no absolute
position embeddings at all, so T5 runs on any length.

No linear layer has a bias. The feed-forward network::

    v1.0:  FFN(x) = ReLU(x W_i) W_o
    v1.1:  FFN(x) = (GELU_tanh(x W_i0) * (x W_i1)) W_o        (gated-GELU, "gelu_new")

Output: v1.0 ties the output layer to ``E`` and rescales the decoder output by
``d^-0.5`` first (the tied embedding is initialised with unit variance);
v1.1 unties ``lm_head`` and does not rescale::

    v1.0:  logits = (d^-0.5 * y_L) E^T
    v1.1:  logits = y_L W_head

(v1.1 also trained without dropout during pre-training and changed the shapes; those are
just config values.)

Initialisation (as Mesh TensorFlow / ``transformers``, with ``init_factor`` f):
``E ~ N(0, f)``, ``W_q ~ N(0, f (d d_kv)^-1/2)``, ``W_k, W_v ~ N(0, f d^-1/2)``,
``W_o ~ N(0, f (h d_kv)^-1/2)``, ``W_i ~ N(0, f d^-1/2)``, FFN ``W_o ~ N(0, f d_ff^-1/2)``,
the bias table ``~ N(0, f d^-1/2)``, norm gains 1.

Attention runs through ``F.scaled_dot_product_attention`` with the bias and mask as a
float ``attn_mask``. Greedy decoding (:meth:`T5.generate`) uses a :class:`T5Cache`: the
decoder's self-attention keys/values are preallocated and filled one step at a time,
and the cross-attention keys/values of the encoder output are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import nn

from ..nn.positional import T5RelativePositionBias
from . import register_model
from .base import PretrainedMixin, check_ids, check_mask, embed_ids, require_vocab
from .beam import Hypothesis, ban_repeated_ngrams, beam_search


@dataclass
class T5Config:
    """Architecture of a :class:`T5`. Defaults are the shape of ``t5-small`` (v1.0)."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    d_model: int = 512
    d_kv: int = 64  # size of each attention head
    d_ff: int = 2048
    n_layer: int = 6  # encoder layers
    n_decoder_layer: int | None = None  # None: same as n_layer
    n_head: int = 8
    relative_buckets: int = 32
    relative_max_distance: int = 128
    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"  # v1.0 / v1.1
    tie_word_embeddings: bool = True  # v1.0: True, v1.1: False
    scale_decoder_output: bool | None = None  # y * d^-0.5 before lm_head; None: = tied
    dropout: float = 0.0
    norm_eps: float = 1e-6
    init_factor: float = 1.0
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0  # T5 starts decoding from <pad>

    def __post_init__(self) -> None:
        if self.n_decoder_layer is None:
            self.n_decoder_layer = self.n_layer
        if self.scale_decoder_output is None:
            self.scale_decoder_output = self.tie_word_embeddings
        for name in ("d_model", "d_kv", "d_ff", "n_layer", "n_decoder_layer", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")
        if self.relative_buckets < 4:
            raise ValueError("relative_buckets must be >= 4 (half of them per direction in "
                             "the encoder, half of those exact)")
        if self.relative_max_distance <= self.relative_buckets // 4:
            raise ValueError(f"relative_max_distance must exceed relative_buckets / 4 = "
                             f"{self.relative_buckets // 4}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.norm_eps <= 0:
            raise ValueError("norm_eps must be > 0")
        if self.vocab_size is not None:
            for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
                if not 0 <= getattr(self, name) < self.vocab_size:
                    raise ValueError(f"{name}={getattr(self, name)} is outside the "
                                     f"vocabulary [0, {self.vocab_size})")

    @property
    def inner_dim(self) -> int:
        return self.n_head * self.d_kv


class T5Cache:
    """Decoder state for incremental decoding.

    ``self_k``/``self_v`` (L, B, h, S_max, d_kv) are preallocated and filled ``length``
    positions so far; ``cross_k``/``cross_v`` (L, B, h, S_src, d_kv) hold the projected
    encoder output, computed on the first step and reused; ``encoder_mask`` (B, S_src)
    marks real source tokens.
    """

    def __init__(self, config: T5Config, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (config.n_decoder_layer, batch_size, config.n_head, max_len, config.d_kv)
        self.self_k = torch.zeros(shape, device=device, dtype=dtype)
        self.self_v = torch.zeros(shape, device=device, dtype=dtype)
        self.cross_k: list[torch.Tensor | None] = [None] * config.n_decoder_layer
        self.cross_v: list[torch.Tensor | None] = [None] * config.n_decoder_layer
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store ``k, v`` (B, h, T, d_kv) at the current position; return all so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"T5Cache is full ({self.max_len} positions)")
        self.self_k[layer, :, :, start:end] = k
        self.self_v[layer, :, :, start:end] = v
        return self.self_k[layer, :, :, :end], self.self_v[layer, :, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (finished sequences, beam search)."""
        self.self_k = self.self_k[:, index]
        self.self_v = self.self_v[:, index]
        self.cross_k = [k[index] if k is not None else None for k in self.cross_k]
        self.cross_v = [v[index] if v is not None else None for v in self.cross_v]


class T5Attention(nn.Module):
    """Multi-head attention without bias terms and without 1/sqrt(d_kv) scaling.

    Self-attention when ``memory`` is None, else cross attention to ``memory``.
    """

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.n_head, self.d_kv, inner = cfg.n_head, cfg.d_kv, cfg.inner_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.d_kv).transpose(1, 2)  # (B, h, T, d_kv)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, memory: torch.Tensor | None = None,
                cache: T5Cache | None = None, layer: int = 0) -> torch.Tensor:
        """``x`` (B, T, d); ``bias`` (B or 1, h or 1, T, S) added to the scores (position
        bias plus mask); ``memory`` (B, S, d) for cross attention."""
        B, T, _ = x.shape
        q = self._heads(self.q(x))  # (B, h, T, d_kv)
        if memory is None:  # self-attention: keys/values from x (and the cache)
            k, v = self._heads(self.k(x)), self._heads(self.v(x))
            if cache is not None:
                k, v = cache.update(layer, k.to(cache.self_k.dtype), v.to(cache.self_v.dtype))
                k, v = k.to(q.dtype), v.to(q.dtype)
        elif cache is not None and cache.cross_k[layer] is not None:
            k, v = cache.cross_k[layer].to(q.dtype), cache.cross_v[layer].to(q.dtype)
        else:  # cross attention: keys/values from the encoder output, once per sequence
            k, v = self._heads(self.k(memory)), self._heads(self.v(memory))
            if cache is not None:
                cache.cross_k[layer], cache.cross_v[layer] = k, v
        if bias.dtype != q.dtype:  # autocast: keep blocked scores finite (no NaN rows)
            bias = bias.to(q.dtype).clamp_min(torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, scale=1.0,
            dropout_p=self.dropout if self.training else 0.0)  # (B, h, T, d_kv)
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_head * self.d_kv))


class T5FeedForward(nn.Module):
    """ReLU (v1.0) or gated-GELU (v1.1; ``wi`` holds the gate and the linear half)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.gated = cfg.feed_forward_proj == "gated-gelu"
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff * (2 if self.gated else 1), bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, lin = self.wi(x).chunk(2, dim=-1)  # (B, T, d_ff) each
            h = F.gelu(gate, approximate="tanh") * lin
        else:
            h = F.relu(self.wi(x))
        return self.wo(self.drop(h))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, is_decoder: bool):
        super().__init__()
        self.self_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.self_attn = T5Attention(cfg)
        if is_decoder:
            self.cross_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
            self.cross_attn = T5Attention(cfg)
        self.ff_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ff = T5FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.is_decoder = is_decoder

    def forward(self, x, self_bias, memory=None, cross_bias=None, cache=None, layer=0):
        x = x + self.drop(self.self_attn(self.self_norm(x), self_bias, None, cache, layer))
        if self.is_decoder:
            x = x + self.drop(self.cross_attn(self.cross_norm(x), cross_bias, memory,
                                              cache, layer))
        return x + self.drop(self.ff(self.ff_norm(x)))


class T5Stack(nn.Module):
    """The encoder (bidirectional bias) or the decoder (unidirectional, cross attention)."""

    def __init__(self, cfg: T5Config, is_decoder: bool):
        super().__init__()
        n = cfg.n_decoder_layer if is_decoder else cfg.n_layer
        # The relative position bias lives with the stack: the first layer computes it,
        # all layers add the same one.
        self.rel_bias = T5RelativePositionBias(cfg.n_head, cfg.relative_buckets,
                                               cfg.relative_max_distance,
                                               bidirectional=not is_decoder)
        self.blocks = nn.ModuleList(T5Block(cfg, is_decoder) for _ in range(n))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)


def _additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" -> 0 / most negative finite value (never NaN rows)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


class T5(PretrainedMixin, nn.Module):
    """Encoder-decoder; ``forward(input_ids, attention_mask, decoder_input_ids)`` returns
    the decoder's next-token logits (B, T_dec, V)."""

    def __init__(self, config: T5Config):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = cfg = config
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg, is_decoder=False)
        self.decoder = T5Stack(cfg, is_decoder=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Mesh-TensorFlow initialisation (see the module docstring)."""
        cfg, f = self.config, self.config.init_factor
        d, dkv, h = cfg.d_model, cfg.d_kv, cfg.n_head
        nn.init.normal_(self.shared.weight, 0.0, f)
        if not cfg.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, 0.0, f)
        for m in self.modules():
            if isinstance(m, T5Attention):
                nn.init.normal_(m.q.weight, 0.0, f * (d * dkv) ** -0.5)
                nn.init.normal_(m.k.weight, 0.0, f * d ** -0.5)
                nn.init.normal_(m.v.weight, 0.0, f * d ** -0.5)
                nn.init.normal_(m.o.weight, 0.0, f * (h * dkv) ** -0.5)
            elif isinstance(m, T5FeedForward):
                nn.init.normal_(m.wi.weight, 0.0, f * d ** -0.5)
                nn.init.normal_(m.wo.weight, 0.0, f * cfg.d_ff ** -0.5)
            elif isinstance(m, T5RelativePositionBias):
                nn.init.normal_(m.embedding.weight, 0.0, f * d ** -0.5)
            elif isinstance(m, nn.RMSNorm):
                nn.init.ones_(m.weight)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameters, tied weights counted once; optionally without E (and lm_head)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.shared.weight.numel()
            if not self.config.tie_word_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    # ------------------------------------------------------------------ stacks

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output (B, S, d). ``attention_mask`` (B, S): 1 real token, 0 padding
        (padding may be on either side: positions are relative)."""
        enc = self.encoder
        B, S = check_ids(input_ids)
        check_mask(attention_mask, (B, S))
        x = enc.drop(embed_ids(self.shared, input_ids))  # (B, S, d)
        bias = enc.rel_bias(S, S)  # (1, h, S, S), bidirectional buckets
        if attention_mask is not None:
            bias = bias + _additive_mask(attention_mask.bool()[:, None, None, :], bias.dtype)
        for block in enc.blocks:
            x = block(x, bias)
        return enc.drop(enc.norm_f(x))

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor,
               attention_mask: torch.Tensor | None = None, cache: T5Cache | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V) of the decoder given the encoder output ``memory`` (B, S, d).

        ``attention_mask`` (B, S) is the *source* padding mask. With a ``cache`` the
        ``decoder_input_ids`` are the new tokens only (they follow ``cache.length``
        earlier ones).
        """
        dec = self.decoder
        B, T = check_ids(decoder_input_ids, "decoder_input_ids")
        start = cache.length if cache is not None else 0
        end = start + T
        y = dec.drop(embed_ids(self.shared, decoder_input_ids, "decoder_input_ids"))  # (B, T, d)
        self_bias = dec.rel_bias(T, end, query_offset=start)  # (1, h, T, end)
        causal = torch.arange(end, device=y.device)[None, :] \
            <= torch.arange(start, end, device=y.device)[:, None]  # (T, end)
        self_bias = self_bias + _additive_mask(causal, self_bias.dtype)
        if attention_mask is not None:
            cross_bias = _additive_mask(attention_mask.bool()[:, None, None, :], y.dtype)
        else:
            cross_bias = torch.zeros(1, 1, 1, memory.shape[1], dtype=y.dtype, device=y.device)
        for i, block in enumerate(dec.blocks):
            y = block(y, self_bias, memory, cross_bias, cache, i)
        if cache is not None:
            cache.length = end
        if last_only:
            y = y[:, -1:]
        y = dec.drop(dec.norm_f(y))
        if self.config.scale_decoder_output:
            y = y * self.config.d_model ** -0.5  # v1.0: the tied E has unit variance
        return self.lm_head(y)  # (B, T, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T_dec, V) for target prefix ``decoder_input_ids`` (teacher forcing:
        ``shift_right(labels)``)."""
        if decoder_input_ids is None:
            raise ValueError("T5.forward needs decoder_input_ids (use shift_right(labels))")
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, attention_mask)

    def shift_right(self, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Decoder inputs for ``labels`` (B, T): start token, then labels[:, :-1]; ignored
        label positions become padding."""
        out = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        out[:, 1:] = labels[:, :-1]
        return out.masked_fill(out == ignore_index, self.config.pad_token_id)

    # ------------------------------------------------------------------ generation

    def new_cache(self, batch_size: int, max_len: int,
                  dtype: torch.dtype | None = None) -> T5Cache:
        return T5Cache(self.config, batch_size, max_len, self.shared.weight.device,
                       dtype or self.shared.weight.dtype)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, use_cache: bool = True,
                 no_repeat_ngram_size: int = 0) -> torch.Tensor:
        """Greedy decoding: (B, n <= max_new_tokens) new token ids, without the start
        token. A row stops at ``eos_token_id`` (included) and is then padded with
        ``pad_token_id``; decoding ends when every row has stopped.
        ``no_repeat_ngram_size`` bans repeated n-grams as Hugging Face's ``generate``
        does (:mod:`lmforge.models.beam`; the start token belongs to the history)."""
        cfg = self.config
        if max_new_tokens < 1 or no_repeat_ngram_size < 0:
            raise ValueError("max_new_tokens must be >= 1 and no_repeat_ngram_size >= 0")
        was_training = self.training
        self.eval()
        try:
            B = input_ids.shape[0]
            memory = self.encode(input_ids, attention_mask)
            cache = self.new_cache(B, max_new_tokens) if use_cache else None
            ids = torch.full((B, 1), cfg.decoder_start_token_id, dtype=torch.long,
                             device=input_ids.device)
            done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
            step_in = ids
            for _ in range(max_new_tokens):
                logits = self.decode(step_in, memory, attention_mask, cache, last_only=True)
                last = ban_repeated_ngrams(logits[:, -1], ids.tolist(), no_repeat_ngram_size)
                nxt = last.argmax(-1)  # (B,)
                nxt = torch.where(done, torch.full_like(nxt, cfg.pad_token_id), nxt)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
                done = done | (nxt == cfg.eos_token_id)
                if bool(done.all()):
                    break
                step_in = nxt[:, None] if use_cache else ids
            return ids[:, 1:]
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def beam_search(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    beam_size: int = 4, max_len: int = 32, alpha: float = 0.6,
                    n_best: int = 1, no_repeat_ngram_size: int = 0) -> list[list[Hypothesis]]:
        """Beam search with the GNMT length penalty (rules in :mod:`lmforge.models.beam`);
        for each source the ``n_best`` hypotheses, best score first, without the start
        token."""
        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        cfg = self.config
        was_training = self.training
        self.eval()
        try:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            rows = rows.repeat_interleave(beam_size)
            memory = self.encode(input_ids, attention_mask)[rows]
            mask = attention_mask[rows] if attention_mask is not None else None
            cache = self.new_cache(len(rows), max_len)
            return beam_search(
                lambda y: self.decode(y[:, None], memory, mask, cache, last_only=True)[:, -1],
                cache.reorder, input_ids.shape[0], beam_size=beam_size, max_len=max_len,
                bos_id=cfg.decoder_start_token_id, eos_id=cfg.eos_token_id, alpha=alpha,
                n_best=n_best, no_repeat_ngram_size=no_repeat_ngram_size,
                device=input_ids.device)
        finally:
            self.train(was_training)


register_model("t5", T5, T5Config)
