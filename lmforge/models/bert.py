r"""BERT and RoBERTa: a bidirectional post-LN Transformer encoder, plus task heads.

Written by hand because it is what lmforge teaches; every shape is commented. One config
covers both published flavours (``flavor: bert | roberta``); they differ only in the
defaults of ``pad_id``, ``position_offset`` and ``type_vocab_size`` (the weights are laid
out identically) and in the training recipe (RoBERTa drops NSP and masks dynamically).

Notation: tokens :math:`w_1..w_T`, segment (token type) ids :math:`s_t`, hidden size
:math:`d`, :math:`h` heads of size :math:`d_h = d/h` (or ``head_dim`` when set, e.g. after
head pruning: Q, K, V are then :math:`h d_h` wide), feed-forward size :math:`d_{ff}`.

Embeddings (sum of three tables, then LayerNorm and dropout)::

    x_0[t] = Dropout(LN(E[w_t] + P[p_t] + S[s_t]))
    BERT:    p_t = t
    RoBERTa: p_t = offset + (number of non-pad tokens in w_1..w_t) - 1 for real tokens,
             p_t = pad_id for padding (offset = pad_id + 1, so row pad_id is never used
             by a real token)

Each of the L encoder layers is **post-LN** (the norm comes after the residual sum,
unlike GPT's pre-LN)::

    a = LN_1(x + Dropout(MHA(x, mask)))
    x = LN_2(a + Dropout(W_2 act(W_1 a + b_1) + b_2))

Self-attention sees every token of the sequence in both directions; only padding is
masked (``M_ij = -inf`` where key j is padding)::

    head_i = softmax(Q_i K_i^T / sqrt(d_h) + M) V_i,    MHA = concat(head_1..head_h) W_o

``act`` is the exact GELU of BERT, ``GELU(x) = x Phi(x) = x/2 (1 + erf(x / sqrt 2))``
(``activation: gelu_tanh`` selects the tanh approximation some checkpoints use).

Pooler (the sentence vector the NSP and classification heads read)::

    pooled = tanh(W_p x_L[0] + b_p)                 (x_L[0]: the final [CLS] state)

Heads (each a small module, built when ``config.head`` asks for it):

- MLM: ``logits = LN(act(x W_t + b_t)) E^T + b``, the decoder tied to the word table E
- NSP: ``logits = pooled W_nsp + b``, 2 classes (0 = B follows A, 1 = B is random)
- sequence classification: ``Dropout(pooled) W_c + b_c``
- token classification: ``Dropout(x_L[t]) W_c + b_c`` for every t
- span QA: ``[start_t, end_t] = x_L[t] W_qa + b_qa``

Initialisation (BERT): every weight ~ N(0, 0.02), biases 0, LayerNorm (1, 0), the padding
row of the word table 0.

Attention runs through ``F.scaled_dot_product_attention`` (fused kernels); with
``output_attentions=True`` the explicit path of :mod:`lmforge.nn.attention` runs instead
and returns the weights of every layer (for attention maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import Tensor, nn

from ..errors import ModelInputError
from ..nn.attention import MultiHeadAttention
from . import register_model
from .base import PretrainedMixin, check_ids, check_mask, embed_ids, require_vocab

Head = Literal["none", "mlm", "pretraining", "seq_cls", "token_cls", "qa"]

_FLAVOR_DEFAULTS = {"bert": {"pad_id": 0, "type_vocab_size": 2},
                    "roberta": {"pad_id": 1, "type_vocab_size": 1}}
_NEEDS_POOLER = ("pretraining", "seq_cls")


@dataclass
class BertConfig:
    """Architecture of a :class:`BertModel`. Fields left ``None`` take the flavour or
    head default (see the comments)."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    flavor: Literal["bert", "roberta"] = "bert"
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int | None = None  # None: 4 * d_model
    head_dim: int | None = None  # None: d_model // n_head (pruned heads keep theirs)
    max_position: int = 512  # rows of the position table (RoBERTa: includes the offset)
    type_vocab_size: int | None = None  # None: 2 (bert) or 1 (roberta)
    dropout: float = 0.1  # hidden dropout (embeddings, residual branches)
    attn_dropout: float | None = None  # dropout on attention weights; None: = dropout
    classifier_dropout: float | None = None  # None: = dropout
    norm_eps: float = 1e-12
    activation: Literal["gelu", "gelu_tanh", "relu"] = "gelu"
    pad_id: int | None = None  # None: 0 (bert [PAD]) or 1 (roberta <pad>)
    position_offset: int | None = None  # None: 0 (bert) or pad_id + 1 (roberta)
    head: Head = "none"
    pooler: bool | None = None  # None: True for head none/pretraining/seq_cls
    num_labels: int = 2  # seq_cls / token_cls
    tie_embeddings: bool = True  # MLM decoder shares the word table
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for key, value in _FLAVOR_DEFAULTS[self.flavor].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.position_offset is None:
            self.position_offset = self.pad_id + 1 if self.flavor == "roberta" else 0
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.pooler is None:
            self.pooler = self.head in ("none", *_NEEDS_POOLER)
        for name in ("n_layer", "n_head", "d_model", "d_ff", "max_position",
                     "type_vocab_size", "num_labels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")
        if self.head_dim is None:
            if self.d_model % self.n_head:
                raise ValueError(f"d_model={self.d_model} is not divisible by "
                                 f"n_head={self.n_head}")
            self.head_dim = self.d_model // self.n_head
        elif self.head_dim < 1:
            raise ValueError(f"head_dim must be >= 1 (got {self.head_dim})")
        if self.pad_id < 0 or (self.vocab_size is not None and self.pad_id >= self.vocab_size):
            raise ValueError(f"pad_id={self.pad_id} is not a valid token id "
                             f"(vocab_size={self.vocab_size})")
        if not 0 <= self.position_offset < self.max_position:
            raise ValueError(f"position_offset={self.position_offset} must be in "
                             f"[0, max_position={self.max_position})")
        for name in ("dropout", "attn_dropout", "classifier_dropout"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (got {v})")
        if self.head in _NEEDS_POOLER and not self.pooler:
            raise ValueError(f"head={self.head!r} reads the pooled [CLS] vector; "
                             "it needs pooler=True")

    @property
    def max_len(self) -> int:
        """The longest sequence the position table allows."""
        return self.max_position - self.position_offset


def activation_fn(name: str):
    if name == "gelu":
        return F.gelu  # exact: x * Phi(x)
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unknown activation {name!r}")


class Embeddings(nn.Module):
    """``x_0 = Dropout(LN(E[w] + P[p] + S[s]))``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.position = nn.Embedding(cfg.max_position, cfg.d_model,
                                     padding_idx=cfg.pad_id if cfg.flavor == "roberta" else None)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def positions(self, input_ids: Tensor) -> Tensor:
        """Position ids (B, T); see the module docstring for the RoBERTa rule."""
        B, T = input_ids.shape
        off = self.cfg.position_offset
        if self.cfg.flavor == "roberta":
            real = (input_ids != self.cfg.pad_id).long()  # (B, T)
            return (real.cumsum(-1) - 1 + off) * real + self.cfg.pad_id * (1 - real)
        return torch.arange(off, off + T, device=input_ids.device).expand(B, T)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = embed_ids(self.word, input_ids) + self.position(self.positions(input_ids)) \
            + embed_ids(self.token_type, token_type_ids, "token_type_ids",
                        "type_vocab_size")  # (B, T, d)
        return self.drop(self.norm(x))


class EncoderLayer(nn.Module):
    """Post-LN: ``a = LN1(x + MHA(x))``, ``x = LN2(a + FFN(a))``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        p_attn = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_head, head_dim=cfg.head_dim,
                                       dropout=p_attn)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ff_in = nn.Linear(cfg.d_model, cfg.d_ff)  # W_1: d -> d_ff
        self.ff_out = nn.Linear(cfg.d_ff, cfg.d_model)  # W_2: d_ff -> d
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.act = activation_fn(cfg.activation)

    def forward(self, x: Tensor, key_mask: Tensor | None,
                need_weights: bool = False, n_queries: int | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """``n_queries``: compute only the first positions (their attention still reads
        every key); the result is then (B, n_queries, d), exactly those rows."""
        q = x if n_queries is None else x[:, :n_queries]
        y, weights = self.attn(q, kv=x, key_mask=key_mask, need_weights=need_weights,
                               average_weights=False)  # (B, T, d), (B, h, T, T)
        return self._add_and_feed_forward(q, y), weights

    def forward_unpadded(self, rows: Tensor, index: Tensor, key_mask: Tensor) -> Tensor:
        """The same layer on the real tokens only: ``rows`` (N, d) are the cells
        ``index`` of the flattened (B·T) grid whose ``key_mask`` (B, T) is True
        (:meth:`MultiHeadAttention.forward_unpadded`). Returns (N, d)."""
        return self._add_and_feed_forward(rows, self.attn.forward_unpadded(rows, index,
                                                                           key_mask))

    def _add_and_feed_forward(self, x: Tensor, y: Tensor) -> Tensor:
        a = self.norm1(x + self.drop(y))
        return self.norm2(a + self.drop(self.ff_out(self.act(self.ff_in(a)))))


# ------------------------------------------------------------------------------ heads

class MLMHead(nn.Module):
    """``logits = LN(act(x W_t + b_t)) E^T + b`` with ``E`` the (tied) word table."""

    def __init__(self, cfg: BertConfig, word: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.act = activation_fn(cfg.activation)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)  # bias: the output bias b
        if cfg.tie_embeddings:
            self.decoder.weight = word.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(self.act(self.dense(x))))  # (..., V)


class NSPHead(nn.Module):
    """Two-way classifier on the pooled [CLS] vector: 0 = B follows A, 1 = random B."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.linear = nn.Linear(cfg.d_model, 2)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.linear(pooled)  # (B, 2)


class SequenceClassificationHead(nn.Module):
    """``logits = Dropout(pooled) W + b``: one label per sequence."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        p = cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
        self.drop = nn.Dropout(p)
        self.linear = nn.Linear(cfg.d_model, cfg.num_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.linear(self.drop(pooled))  # (B, C)


class TokenClassificationHead(SequenceClassificationHead):
    """``logits[t] = Dropout(x_L[t]) W + b``: one label per token (NER, tagging)."""

    # Same layers; forward takes the hidden states (B, T, d) and returns (B, T, C).


class SpanQAHead(nn.Module):
    """Extractive QA: ``start_t, end_t = x_L[t] W + b``; returns two (B, T) logit rows."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.linear = nn.Linear(cfg.d_model, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        start, end = self.linear(x).unbind(-1)  # (B, T) each
        return start, end


# ------------------------------------------------------------------------------ model

class BertModel(PretrainedMixin, nn.Module):
    """BERT/RoBERTa encoder with an optional head (``config.head``).

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` returns, by head:

    ========================  ==================================================
    ``none``                  hidden states (B, T, d)
    ``mlm``                   MLM logits (B, T, V)
    ``pretraining``           (MLM logits (B, T, V), NSP logits (B, 2))
    ``seq_cls``               logits (B, C)
    ``token_cls``             logits (B, T, C)
    ``qa``                    (start logits (B, T), end logits (B, T))
    ========================  ==================================================

    ``mlm_positions`` (B, T) boolean computes the MLM logits only where it is True, as
    (N, V) rows in row-major order (the vocabulary projection is the costliest part of
    MLM training and only ~15% of positions carry a label). With
    ``output_attentions=True`` the result is ``(output, attentions)``, ``attentions`` a
    list of (B, h, T, T) weights, one per layer. :meth:`encode` gives the hidden states
    whatever the head; :meth:`pool` the pooled [CLS] vector.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = cfg = config
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layer))
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model) if cfg.pooler else None
        self.mlm = MLMHead(cfg, self.embeddings.word) \
            if cfg.head in ("mlm", "pretraining") else None
        self.nsp = NSPHead(cfg) if cfg.head == "pretraining" else None
        self.classifier: nn.Module | None = None
        if cfg.head == "seq_cls":
            self.classifier = SequenceClassificationHead(cfg)
        elif cfg.head == "token_cls":
            self.classifier = TokenClassificationHead(cfg)
        self.qa = SpanQAHead(cfg) if cfg.head == "qa" else None
        self.reset_parameters()

    def tie_weights(self) -> None:
        """Share the word table with the MLM decoder again (``to_empty`` unties them)."""
        if self.mlm is not None and self.config.tie_embeddings:
            self.mlm.decoder.weight = self.embeddings.word.weight

    def reset_parameters(self) -> None:
        """BERT init: N(0, init_std) weights, zero biases, zero padding embedding rows."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameters, tied weights counted once; optionally without the three tables."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            e = self.embeddings
            n -= e.word.weight.numel() + e.position.weight.numel() + e.token_type.weight.numel()
        return n

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               token_type_ids: Tensor | None = None, output_attentions: bool = False,
               cls_only: bool = False, unpad: bool = False):
        """Final hidden states (B, T, d), plus the per-layer weights when asked.

        ``cls_only=True`` gives only the [CLS] state (B, 1, d), which is all a sequence
        classifier reads: the last layer then runs for that one query (its keys and values
        still cover every position), the same numbers for less work.

        ``unpad=True`` (a batch with padding, without ``output_attentions``): every layer
        but the attention scores runs on the N real tokens instead of the B·T cells, the
        same numbers at the real tokens; the padding positions of the result are zeros,
        for a caller that never reads them (the task heads). A random batch of 32 world
        reviews is 38% padding."""
        B, T = check_ids(input_ids)
        check_mask(attention_mask, (B, T))
        if token_type_ids is not None:
            check_ids(token_type_ids, "token_type_ids")
            check_mask(token_type_ids, (B, T), "token_type_ids")
        if T > self.config.max_len:
            raise ModelInputError(f"sequence length {T} exceeds the {self.config.max_len} "
                             f"positions of this model (max_position="
                             f"{self.config.max_position})")
        key_mask = None
        if attention_mask is not None:
            key_mask = attention_mask.bool()  # (B, T), True = real token
            # no padding: the unmasked fused kernel is fastest (an exported graph cannot
            # branch on values, so it keeps the mask: lmforge.compress.onnx_export)
            if not torch.compiler.is_exporting() and bool(key_mask.all()):
                key_mask = None
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, d)
        if unpad and key_mask is not None and not output_attentions \
                and not torch.compiler.is_exporting():
            return self._encode_unpadded(x, key_mask, cls_only)
        attentions = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x, w = layer(x, key_mask, output_attentions, 1 if cls_only and i == last else None)
            if output_attentions:
                attentions.append(w)
        return (x, attentions) if output_attentions else x

    def _encode_unpadded(self, x: Tensor, key_mask: Tensor, cls_only: bool) -> Tensor:
        """:meth:`encode` on the real tokens' rows, scattered back onto the (B, T) grid
        (zeros at padding); with ``cls_only`` the last layer runs on the grid for [CLS]."""
        B, T, d = x.shape
        index = key_mask.reshape(-1).nonzero().squeeze(1)  # (N,) real cells, row-major
        rows = x.reshape(B * T, d).index_select(0, index)
        for layer in self.layers[:-1] if cls_only else self.layers:
            rows = layer.forward_unpadded(rows, index, key_mask)
        x = rows.new_zeros(B * T, d).index_copy(0, index, rows).view(B, T, d)
        if cls_only:
            x, _ = self.layers[-1](x, key_mask, False, 1)
        return x

    def pool(self, hidden: Tensor) -> Tensor:
        """``tanh(W_p h[:, 0] + b_p)``: (B, T, d) -> (B, d)."""
        if self.pooler is None:
            raise ValueError("this model has no pooler (config.pooler=False)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, *, output_attentions: bool = False,
                mlm_positions: Tensor | None = None):
        enc = self.encode(input_ids, attention_mask, token_type_ids, output_attentions)
        x, attentions = enc if output_attentions else (enc, None)
        head = self.config.head
        out: object
        if head == "none":
            out = x
        elif head in ("mlm", "pretraining"):
            h = x if mlm_positions is None else x[mlm_positions]  # (B, T, d) or (N, d)
            logits = self.mlm(h)
            out = logits if head == "mlm" else (logits, self.nsp(self.pool(x)))
        elif head == "seq_cls":
            out = self.classifier(self.pool(x))
        elif head == "token_cls":
            out = self.classifier(x)
        else:
            out = self.qa(x)
        return (out, attentions) if output_attentions else out


register_model("bert", BertModel, BertConfig)
