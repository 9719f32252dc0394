r"""Encoders trained from scratch for the task heads: TextCNN and a BiLSTM.

Written by hand (lmforge teaches them). Both read token ids ``x`` (B, T) with a padding
mask ``m`` (B, T) (1 = real token) and give hidden states (B, T, d) the task heads read,
like a pretrained encoder's. The embedding is ``E[x_t]``, dimension ``d_emb``.

**TextCNN** (Kim 2014). For each window width :math:`k \in` ``kernel_sizes`` there are
``n_filters`` filters :math:`w \in \mathbb{R}^{k \cdot d_{emb}}`; each slides over the
sentence (``same`` padding, so there is one value per token)::

    c_t^{(k, f)} = ReLU(w^{(k, f)} . [E x_{t-(k-1)/2} ; ... ; E x_{t+k/2}] + b^{(k, f)})

The hidden state of token t concatenates every filter's value: d = len(kernel_sizes) x
n_filters. Kim's classifier reads the **max over time** of each feature,
``z_j = max_{t: m_t=1} c_{t,j}`` (pooling ``max``), then dropout and a linear layer.

**BiLSTM** (the tagger of Huang et al. 2015 and Lample et al. 2016, the classifier of
Zhou et al. 2016). A forward and a backward LSTM (lmforge's own, :mod:`lmforge.nn.recurrent`)
read the sentence; padding is never read by either direction (the backward LSTM starts at
each sequence's real last token)::

    h_t = [LSTM_fwd(E x_1..E x_t) ; LSTM_bwd(E x_T..E x_t)]        d = 2 x hidden

Attention pooling (Zhou et al. 2016) for classification::

    a_t = softmax_t( v . tanh(W h_t) )   (over real tokens),    z = sum_t a_t h_t
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.recurrent import LSTM


@dataclass
class TextCNNConfig:
    vocab_size: int = 0
    d_emb: int = 128
    n_filters: int = 100
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    pad_id: int = 0


class TextCNN(nn.Module):
    """Token ids (B, T) -> per-token filter responses (B, T, len(kernel_sizes) x n_filters)."""

    def __init__(self, cfg: TextCNNConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_emb, padding_idx=cfg.pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.d_emb, cfg.n_filters, k)
                                   for k in cfg.kernel_sizes)
        self.hidden_size = cfg.n_filters * len(cfg.kernel_sizes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embed(input_ids).transpose(1, 2)                       # (B, d_emb, T)
        # "same" padding: (k-1)//2 zeros before, k//2 after, one response per token
        h = torch.cat([torch.relu(c(F.pad(x, ((k - 1) // 2, k // 2))))
                       for c, k in zip(self.convs, self.config.kernel_sizes, strict=True)],
                      dim=1)                                            # (B, d, T)
        return h.transpose(1, 2)                                        # (B, T, d)


@dataclass
class BiLSTMConfig:
    vocab_size: int = 0
    d_emb: int = 128
    hidden: int = 128
    n_layer: int = 1
    dropout: float = 0.1
    pad_id: int = 0


class BiLSTM(nn.Module):
    """Token ids (B, T) -> [forward ; backward] LSTM states (B, T, 2 x hidden)."""

    def __init__(self, cfg: BiLSTMConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_emb, padding_idx=cfg.pad_id)
        self.drop = nn.Dropout(cfg.dropout)
        self.fwd = LSTM(cfg.d_emb, cfg.hidden, cfg.n_layer, batch_first=True,
                        dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.bwd = LSTM(cfg.d_emb, cfg.hidden, cfg.n_layer, batch_first=True,
                        dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.hidden_size = 2 * cfg.hidden

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.drop(self.embed(input_ids))                            # (B, T, d_emb)
        lengths = attention_mask.long().sum(1)                          # (B,)
        T = x.shape[1]
        # reverse each sequence within its own length, so the backward LSTM starts at
        # the real last token: index t -> len - 1 - t (padding stays where it is)
        t = torch.arange(T, device=x.device)[None, :]
        rev = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
        h_f, _ = self.fwd(x)
        h_b, _ = self.bwd(x.gather(1, rev[..., None].expand_as(x)))
        h_b = h_b.gather(1, rev[..., None].expand_as(h_b))              # back in order
        return self.drop(torch.cat([h_f, h_b], dim=-1))


class AttentionPool(nn.Module):
    """``a = softmax(v . tanh(W h))`` over real tokens, ``z = sum_t a_t h_t``; ``W`` is
    (d_att, d) with ``d_att = d`` by default."""

    def __init__(self, d: int, d_att: int | None = None):
        super().__init__()
        d_att = d_att or d
        self.proj = nn.Linear(d, d_att)
        self.v = nn.Linear(d_att, 1, bias=False)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        scores = self.v(torch.tanh(self.proj(h))).squeeze(-1)          # (B, T)
        scores = scores.masked_fill(~mask.bool(), float("-inf"))
        a = torch.softmax(scores, dim=-1)
        return torch.einsum("bt,btd->bd", a, h)
