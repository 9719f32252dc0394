r"""DeBERTa-v2/v3: BERT with disentangled attention (He et al. 2021).

Written by hand because it is what lmforge teaches; every shape is commented.

Notation: :math:`H \in \mathbb{R}^{T \times d}` the hidden states, :math:`h` heads of size
:math:`d_h = d / h`, :math:`P \in \mathbb{R}^{2k \times d}` the relative position
embeddings (shared by all layers), ``k`` the attention span (``position_buckets`` when
> 0, else ``max_relative_positions``).

Relative positions. For query ``i`` and key ``j`` the distance ``i - j`` is bucketed
(``position_buckets`` b > 0, ``max_relative_positions`` m) by the log-bucket rule::

    r = i - j,  mid = b / 2
    bucket(r) = r                                                         if |r| <= mid
              = sign(r) * (mid + ceil(log(|r| / mid) / log((m-1) / mid) * (mid - 1)))  else

(exact within ``mid``, logarithmic beyond, reaching ``b - 1`` at ``|r| = m - 1``), and
turned into a row of ``P``: ``delta(i, j) = clamp(bucket(i - j) + k, 0, 2k - 1)``.
Without buckets (b <= 0) ``bucket(r) = r``.

Disentangled attention, per head: content projections of ``H`` and position projections
of the (LayerNorm-ed, ``norm_rel_ebd``) table ``P``; with ``share_att_key`` the
position projections reuse the content ones (biases included)::

    Q^c = H W_q + b_q,  K^c = H W_k + b_k,  V = H W_v + b_v
    Q^r = P W_q + b_q,  K^r = P W_k + b_k          (share_att_key; else own W_{q,r}, W_{k,r})

    A_ij = Q^c_i . K^c_j                   content -> content       (the paper's eq. 4)
         + Q^c_i . K^r_{delta(i,j)}        content -> position  (c2p)
         + K^c_j . Q^r_{delta(j,i)}        position -> content  (p2c)

    Attn(H) = softmax(A / sqrt(d_h * s) + M) V,     s = 1 + |pos_att_type|

The scale counts the score terms (``s = 3`` with both c2p and p2c): a sum of ``s``
dot products of variance ~``d_h`` each has variance ~``s d_h``, so dividing by
``sqrt(s d_h)`` keeps the scores at unit variance, as ``1/sqrt(d_h)`` does in BERT. ``M`` blocks pairs where the query **or** the key is padding.

In code both position terms read the same row ``delta(i, j)`` of the projected table:
c2p from the query's content, p2c from the key's content::

    c2p[i, j] = Q^c_i . K^r_{delta(i,j)}         p2c[i, j] = K^c_j . Q^r_{delta(i,j)}

The paper writes the p2c row as :math:`\delta(j, i)`; the released DeBERTa code (and
``transformers``) gathers it with ``-bucket(j - i) = bucket(i - j)``, i.e. the row above,
and the released checkpoints were trained that way, so lmforge does the same
(``tests/test_deberta.py`` checks both terms against an explicit double loop).

Layers are post-LN (as BERT)::

    H = LN(H + Attn(H) W_o + b_o)
    H = LN(H + GELU(H W_1 + b_1) W_2 + b_2)

Embeddings: ``LN(E[tokens] (+ P_abs[positions] if position_biased_input)
(+ T[token_types])) * mask`` (padding rows zeroed), with an optional projection when
``embedding_size != d``. DeBERTa-v3 uses ``position_biased_input = False``: positions
enter only through the relative terms.

Optional ConvLayer (DeBERTa-v2 xlarge/xxlarge, ``conv_kernel_size > 0``): after the
first layer ``H_1 = LN(H_1 + act(Conv1d(H_0) * mask)) * mask``.

MLM head (``head: mlm``; ``DebertaV2ForMaskedLM``)::

    logits = LN(GELU(H W_t + b_t)) E^T + b_vocab           (E: the tied word embeddings)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import nn

from ..errors import ModelInputError
from . import register_model
from .base import PretrainedMixin, check_dims, check_ids, check_mask, embed_ids, require_vocab

_ACT = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu, "tanh": torch.tanh}


@dataclass
class DebertaV2Config:
    """Architecture of a :class:`DebertaV2`. Defaults are the shape of deberta-v3-small."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    vocab_size: int | None = None
    d_model: int = 768
    n_layer: int = 6
    n_head: int = 12
    d_ff: int = 3072
    max_seq_len: int = 512  # max_position_embeddings
    type_vocab_size: int = 0
    embedding_size: int | None = None  # None: d_model
    hidden_act: Literal["gelu", "gelu_new", "relu"] = "gelu"
    norm_eps: float = 1e-7
    dropout: float = 0.0  # hidden dropout
    attention_dropout: float = 0.0
    relative_attention: bool = True
    max_relative_positions: int = -1  # < 1: max_seq_len
    position_buckets: int = 256  # <= 0: no bucketing
    pos_att_type: list[Literal["c2p", "p2c"]] = field(default_factory=lambda: ["p2c", "c2p"])
    share_att_key: bool = True
    norm_rel_ebd: Literal["none", "layer_norm"] = "layer_norm"
    position_biased_input: bool = False
    conv_kernel_size: int = 0  # > 0: the ConvLayer after the first layer
    conv_groups: int = 1
    conv_act: Literal["gelu", "gelu_new", "relu", "tanh"] = "tanh"
    pad_token_id: int = 0
    head: Literal["none", "mlm"] = "mlm"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.embedding_size is None:
            self.embedding_size = self.d_model
        if self.max_relative_positions < 1:
            self.max_relative_positions = self.max_seq_len
        self.pos_att_type = list(dict.fromkeys(self.pos_att_type))  # no duplicates
        check_dims(self, ("d_model", "n_layer", "n_head", "d_ff", "max_seq_len", "embedding_size"))
        if self.type_vocab_size < 0 or self.conv_kernel_size < 0:
            raise ValueError("type_vocab_size and conv_kernel_size must be >= 0")
        if self.conv_kernel_size and self.conv_kernel_size % 2 == 0:
            raise ValueError("conv_kernel_size must be odd (the output keeps the length)")
        if self.conv_kernel_size and self.d_model % self.conv_groups:
            raise ValueError("d_model must be divisible by conv_groups")
        if self.position_buckets > 0 and self.position_buckets < 4:
            raise ValueError("position_buckets must be >= 4 (or <= 0 for no buckets)")
        if self.position_buckets > 0 and self.max_relative_positions <= self.position_buckets // 2 + 1:
            raise ValueError(f"max_relative_positions ({self.max_relative_positions}) must "
                             f"exceed position_buckets / 2 + 1 ({self.position_buckets // 2 + 1})")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.attention_dropout < 1.0):
            raise ValueError("dropout rates must be in [0, 1)")
        if self.norm_eps <= 0:
            raise ValueError("norm_eps must be > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def att_span(self) -> int:
        """k: half the number of rows of the relative embedding table P."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative_positions


def log_bucket_position(rel: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa's log buckets of relative positions ``rel`` (int tensor), same sign.

    Exact for ``|rel| <= bucket_size / 2``; beyond, logarithmic, reaching
    ``bucket_size - 1`` at ``|rel| = max_position - 1``. The float operations follow the
    reference implementation, so bucket edges agree exactly.
    """
    sign = torch.sign(rel)
    mid = bucket_size // 2
    abs_pos = torch.where((rel < mid) & (rel > -mid), torch.tensor(mid - 1).type_as(rel),
                          torch.abs(rel))
    log_pos = torch.ceil(torch.log(abs_pos / mid)
                         / torch.log(torch.tensor((max_position - 1) / mid))
                         * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, rel.type_as(log_pos), log_pos * sign).long()


def relative_position_index(q_len: int, k_len: int, cfg: DebertaV2Config,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """(q_len, k_len) bucketed ``i - j`` (query minus key)."""
    rel = torch.arange(q_len, device=device)[:, None] - torch.arange(k_len, device=device)[None]
    if cfg.position_buckets > 0:
        rel = log_bucket_position(rel, cfg.position_buckets, cfg.max_relative_positions)
    return rel


class DisentangledSelfAttention(nn.Module):
    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        d, self.n_head, self.head_dim = cfg.d_model, cfg.n_head, cfg.head_dim
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.relative = cfg.relative_attention
        self.c2p, self.p2c = "c2p" in cfg.pos_att_type, "p2c" in cfg.pos_att_type
        self.share = cfg.share_att_key
        if self.relative and not self.share:
            if self.c2p:
                self.pos_key = nn.Linear(d, d)
            if self.p2c:
                self.pos_query = nn.Linear(d, d)
        # s = 1 + number of position terms (counted from the config, as the reference does)
        self.scale = 1.0 / math.sqrt(self.head_dim * (1 + self.c2p + self.p2c))
        self.span = cfg.att_span
        self.dropout, self.pos_dropout = cfg.attention_dropout, cfg.dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.n_head, self.head_dim).transpose(-3, -2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel_index: torch.Tensor | None,
                rel_emb: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, T, d); ``mask`` (B, 1, T, T) bool; ``rel_index`` (T, T) rows of
        ``rel_emb`` (2k, d)."""
        B, T, _ = x.shape
        q = self._heads(self.query(x))  # (B, h, T, d_h)
        k = self._heads(self.key(x))
        v = self._heads(self.value(x))
        bias = torch.zeros((), dtype=q.dtype, device=x.device)
        if self.relative and (self.c2p or self.p2c):
            P = F.dropout(rel_emb[: 2 * self.span], self.pos_dropout, self.training)  # (2k, d)
            idx = (rel_index + self.span).clamp(0, 2 * self.span - 1)  # (T, T) delta(i, j)
            if self.c2p:
                k_r = self._heads((self.key if self.share else self.pos_key)(P))  # (h, 2k, d_h)
                c2p = q @ k_r.transpose(-1, -2).to(q.dtype)  # (B, h, T, 2k)
                bias = bias + c2p.gather(-1, idx.expand(B, self.n_head, T, T))  # [i, delta(i,j)]
            if self.p2c:
                q_r = self._heads((self.query if self.share else self.pos_query)(P))
                p2c = k @ q_r.transpose(-1, -2).to(k.dtype)  # (B, h, T_key, 2k)
                # entry [i, j] = K^c_j . Q^r_{delta(i,j)}: gather row j at column idx[i, j]
                bias = bias + p2c.gather(-1, idx.t().expand(B, self.n_head, T, T)) \
                    .transpose(-1, -2)
            bias = bias * self.scale
        # Blocked pairs get the most negative finite value (a padding query then
        # attends uniformly, as in the reference; its output is never used).
        bias = bias.masked_fill(~mask, torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.expand(B, self.n_head, T, T), scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0)  # (B, h, T, d_h)
        return y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)


class DebertaLayer(nn.Module):
    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        self.attn = DisentangledSelfAttention(cfg)
        self.attn_out = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ff_in = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff_out = nn.Linear(cfg.d_ff, cfg.d_model)
        self.ff_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.act = _ACT[cfg.hidden_act]
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, rel_index, rel_emb):
        x = self.attn_norm(x + self.drop(self.attn_out(self.attn(x, mask, rel_index, rel_emb))))
        return self.ff_norm(x + self.drop(self.ff_out(self.act(self.ff_in(x)))))


class ConvLayer(nn.Module):
    """DeBERTa-v2's n-gram convolution, added to the output of the first layer."""

    def __init__(self, cfg: DebertaV2Config):
        super().__init__()
        self.conv = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.conv_kernel_size,
                              padding=(cfg.conv_kernel_size - 1) // 2, groups=cfg.conv_groups)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.act = _ACT[cfg.conv_act]
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h0: torch.Tensor, h1: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``h0`` embeddings, ``h1`` first-layer output (B, T, d); ``valid`` (B, T) bool."""
        out = self.conv(h0.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        out = self.act(self.drop(out.masked_fill(~valid[..., None], 0.0)))
        return self.norm(h1 + out) * valid[..., None].to(h1.dtype)


class DebertaV2(PretrainedMixin, nn.Module):
    """DeBERTa-v2/v3 encoder. ``forward`` returns MLM logits (B, T, V) with ``head: mlm``,
    else the final hidden states (B, T, d); :meth:`encode` always gives hidden states."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = cfg = config
        E = cfg.embedding_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, E)
        self.position_embeddings = nn.Embedding(cfg.max_seq_len, E) \
            if cfg.position_biased_input else None
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, E) \
            if cfg.type_vocab_size > 0 else None
        self.embed_proj = nn.Linear(E, cfg.d_model, bias=False) if E != cfg.d_model else None
        self.embed_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DebertaLayer(cfg) for _ in range(cfg.n_layer))
        if cfg.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * cfg.att_span, cfg.d_model)  # P (2k, d)
            self.rel_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) \
                if cfg.norm_rel_ebd == "layer_norm" else None
        self.conv = ConvLayer(cfg) if cfg.conv_kernel_size > 0 else None
        if cfg.head == "mlm":
            self.mlm_dense = nn.Linear(cfg.d_model, E)
            self.mlm_norm = nn.LayerNorm(E, eps=cfg.norm_eps)
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT initialisation: N(0, init_std) weights, zero biases, unit norms."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv1d):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.head == "mlm":
            nn.init.zeros_(self.mlm_bias)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.word_embeddings.weight.numel()
        return n

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, d). ``attention_mask`` (B, T): 1 real, 0 padding."""
        cfg = self.config
        B, T = check_ids(input_ids)
        check_mask(attention_mask, (B, T))
        if T > cfg.max_seq_len and cfg.position_biased_input:
            raise ModelInputError(f"sequence length {T} exceeds max_seq_len {cfg.max_seq_len}")
        valid = torch.ones(B, T, dtype=torch.bool, device=input_ids.device) \
            if attention_mask is None else attention_mask.bool()
        x = embed_ids(self.word_embeddings, input_ids)  # (B, T, E)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(torch.arange(T, device=x.device))
        if self.token_type_embeddings is not None:
            tt = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + embed_ids(self.token_type_embeddings, tt, "token_type_ids",
                              "type_vocab_size")
        if self.embed_proj is not None:
            x = self.embed_proj(x)  # (B, T, d)
        x = self.drop(self.embed_norm(x) * valid[..., None].to(x.dtype))
        h0 = x
        mask = (valid[:, None, :, None] & valid[:, None, None, :])  # (B, 1, T, T)
        rel_index = rel_emb = None
        if cfg.relative_attention:
            rel_index = relative_position_index(T, T, cfg, x.device)  # (T, T)
            rel_emb = self.rel_embeddings.weight  # (2k, d)
            if self.rel_norm is not None:
                rel_emb = self.rel_norm(rel_emb)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rel_index, rel_emb)
            if i == 0 and self.conv is not None:
                x = self.conv(h0, x, valid)
        return x

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM head on hidden states (B, T, d) -> (B, T, V), tied to the embeddings."""
        if self.config.head != "mlm":
            raise ValueError("this DebertaV2 has no MLM head (config.head = 'none')")
        h = self.mlm_norm(_ACT[self.config.hidden_act](self.mlm_dense(hidden)))  # (B, T, E)
        return h @ self.word_embeddings.weight.t() + self.mlm_bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                mlm_positions: torch.Tensor | None = None) -> torch.Tensor:
        """MLM logits (B, T, V), or hidden states (B, T, d) when ``head`` is ``none``.

        ``mlm_positions`` (B, T) bool restricts the vocabulary projection to those
        positions and returns (N, V) logits in row-major order (the interface of
        :class:`lmforge.train.mlm.MLMObjective`)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        if self.config.head != "mlm":
            return hidden
        if mlm_positions is not None:
            hidden = hidden[mlm_positions.bool()]  # (N, d)
        return self.mlm_logits(hidden)


register_model("deberta_v2", DebertaV2, DebertaV2Config)
