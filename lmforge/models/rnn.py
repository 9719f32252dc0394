r"""Recurrent models: an RNN language model and an attentional seq2seq translator.

Written by hand because lmforge teaches them; the recurrent layers come from
:mod:`lmforge.nn.recurrent` (equations there) and the attention scores from
:mod:`lmforge.nn.attention`.

RNN language model (:class:`RNNLM`, arch ``rnn_lm``)::

    e_t = E[x_t]                                   embedding, (B, T, d_embed)
    h_t = RNN(e_t, h_{t-1})                        rnn | lstm | gru, n_layer deep
    z_t = W_out h_t + b                            logits over the vocabulary
    (tied: z_t = E (P h_t) + b, P a projection when d_hidden != d_embed)

Truncated back-propagation through time (TBPTT): a long token stream is cut into chunks
of ``bptt`` tokens; the hidden state at the end of one chunk is the initial state of the
next, but the graph is cut between them, so the gradient flows back at most ``bptt``
steps::

    logits, state = model(chunk, state)
    loss.backward()
    state = tuple(s.detach() for s in state)       # or detach_state(state)

:class:`TBPTTObjective` does exactly this for the trainer; :class:`TBPTTBatches` makes
the consecutive chunks (row ``b`` of chunk ``i+1`` continues row ``b`` of chunk ``i``).

Seq2seq with attention (:class:`Seq2Seq`, arch ``seq2seq_rnn``). The encoder reads the
source (bidirectional by default, padded batches through ``lengths``); its final states,
merged per layer by ``tanh(W [h_fwd; h_bwd])`` when bidirectional, start the decoder.
With encoder states :math:`H = h_1..h_S` and the decoder's top-layer state
:math:`s_t`:

- ``bahdanau`` (Bahdanau et al. 2015): attend with the previous state, feed the
  context in::

      c_t = Attn(s_{t-1}, H),  s_t = RNN([E[y_{t-1}]; c_t], s_{t-1})
      z_t = W_out tanh(W_c [s_t; c_t])

- ``luong`` (Luong et al. 2015, general score, no input feeding): attend with the new
  state, so teacher forcing runs the decoder over the whole target in one call::

      s_t = RNN(E[y_{t-1}], s_{t-1}),  c_t = Attn(s_t, H),  z_t = W_out tanh(W_c [s_t; c_t])

- ``none``: ``z_t = W_out s_t``, the encoder's state is the only link.

Training uses teacher forcing (the decoder reads the true previous token ``tgt_in``).
Decoding is greedy or beam search with the GNMT length penalty (Wu et al. 2016)::

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

where ``|Y|`` counts the generated tokens including ``eos``. A hypothesis ends when it
emits ``eos``; a source is done when ``beam_size`` hypotheses have ended (so a beam of
one is exactly greedy decoding) or at ``max_len``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import ConfigDict
from torch import Tensor, nn

from ..errors import ModelInputError
from ..nn.attention import AdditiveAttention, MultiplicativeAttention
from ..nn.losses import token_cross_entropy
from ..nn.recurrent import GRU, LSTM, RNN
from . import register_model
from .base import PretrainedMixin, check_ids, check_special_ids, embed_ids, require_vocab
from .beam import Hypothesis, beam_search, greedy_search

CellName = Literal["rnn", "lstm", "gru"]
_CELLS = ("rnn", "lstm", "gru")
State = Any  # Tensor (L, B, H), or (h, c) for LSTM


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int, *,
                   dropout: float = 0.0, bidirectional: bool = False, fused: bool = True):
    """A batch-first :class:`RNN` (tanh) / :class:`LSTM` / :class:`GRU` layer."""
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell]
    return cls(input_size, hidden_size, num_layers, batch_first=True,
               dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
               fused=fused)


def detach_state(state: State) -> State:
    """Cut the graph behind a recurrent state (TBPTT): ``tuple(s.detach() for s in state)``."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _index_state(state: State, index: Tensor) -> State:
    """Keep batch rows ``index`` of a state (L, B, H) (or an LSTM (h, c) pair)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def _check_common(cfg: Any) -> None:
    if cfg.cell not in _CELLS:
        raise ValueError(f"cell must be one of {', '.join(_CELLS)}; got {cfg.cell!r}")
    for name in ("d_embed", "d_hidden", "n_layer"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError("dropout must be in [0, 1)")


# ====================================================================== language model

@dataclass
class RNNLMConfig:
    """Architecture of an :class:`RNNLM`."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    cell: CellName = "lstm"
    d_embed: int = 128
    d_hidden: int = 256
    n_layer: int = 2
    dropout: float = 0.0
    tie_embeddings: bool = False
    fused: bool = True  # fused kernels (True) or the readable per-step loop (False)

    def __post_init__(self) -> None:
        _check_common(self)
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")


class RNNLM(PretrainedMixin, nn.Module):
    """Embedding -> recurrent layers -> linear. ``forward(ids, state) -> (logits, state)``."""

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = make_recurrent(cfg.cell, cfg.d_embed, cfg.d_hidden, cfg.n_layer,
                                  dropout=cfg.dropout, fused=cfg.fused)
        self.proj = None
        d_out = cfg.d_hidden
        if cfg.tie_embeddings and cfg.d_hidden != cfg.d_embed:
            self.proj = nn.Linear(cfg.d_hidden, cfg.d_embed, bias=False)
            d_out = cfg.d_embed
        self.lm_head = nn.Linear(d_out, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def init_state(self, batch_size: int) -> State:
        """The zero state for ``batch_size`` sequences."""
        w = self.embed.weight
        z = w.new_zeros(self.config.n_layer, batch_size, self.config.d_hidden)
        return (z, z.clone()) if self.config.cell == "lstm" else z

    def forward(self, input_ids: Tensor, state: State = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """Logits (B, T, V) for ``input_ids`` (B, T) and the state after the last token.

        ``state``: the state returned by the previous chunk (detach it for TBPTT), or
        None for zeros. ``lengths`` (B,): real lengths of right-padded rows; the
        returned state is then the one after each row's last real token.
        """
        if check_ids(input_ids)[1] == 0:
            raise ModelInputError("input_ids has no time steps (shape (B, 0)); give at "
                                  "least one token per row")
        x = self.drop(embed_ids(self.embed, input_ids))  # (B, T, d_embed)
        h, state = self.rnn(x, state, lengths=lengths)  # (B, T, d_hidden)
        h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.lm_head(h), state  # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TBPTTObjective:
    """Truncated BPTT for the trainer: ``objective(model, batch) -> (loss, metrics, n)``.

    A batch is ``{"input_ids": (B, T), "labels": (B, T), "reset": bool}`` (or an
    ``(x, y)`` tuple). The state left by one batch starts the next, detached
    (``state = tuple(s.detach() for s in state)``), so the gradient reaches back only
    over the current chunk. The state starts from zeros when ``reset`` is true, when
    the batch size changes, and separately for training and evaluation (keyed by
    ``model.training``), so evaluation never disturbs the training stream.
    """

    name = "tbptt_lm"

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = ignore_index
        self._state: dict[bool, State] = {}

    def reset(self) -> None:
        self._state.clear()

    def state_dict(self) -> dict:
        """The carried states (training and evaluation stream). The trainer saves them in
        every checkpoint and restores them on resume, so a resumed run continues the
        stream from the state an uninterrupted run has there, not from zeros."""
        return {"train": self._state.get(True), "eval": self._state.get(False)}

    def load_state_dict(self, state: dict) -> None:
        self._state = {key: s for key, s in ((True, state.get("train")),
                                             (False, state.get("eval"))) if s is not None}

    def __call__(self, model: nn.Module, batch: Any):
        if isinstance(batch, dict):
            x, y, reset = batch["input_ids"], batch["labels"], bool(batch.get("reset", False))
        else:
            (x, y), reset = batch, False
        key = bool(model.training)
        state = None if reset else self._state.get(key)
        if state is not None:
            h = state[0] if isinstance(state, tuple) else state
            if h.shape[1] != x.shape[0] or h.device != x.device:
                state = None
        logits, state = model(x, state)
        self._state[key] = detach_state(state)
        loss, n_tokens = token_cross_entropy(logits, y, self.ignore_index)
        return loss, {}, n_tokens

    def __repr__(self) -> str:
        return f"TBPTTObjective(ignore_index={self.ignore_index})"


class TBPTTBatches:
    """Consecutive TBPTT chunks of one token stream (a trainer batch source).

    The stream is cut into ``batch_size`` equal contiguous rows (the rest dropped);
    chunk ``i`` is columns ``[i*bptt, (i+1)*bptt)`` of the rows, with labels one token
    further, so row ``b`` of chunk ``i+1`` continues row ``b`` of chunk ``i``. The
    trainer's micro-batch ``micro`` of update ``step`` is chunk
    ``(step * grad_accum + micro) % n_chunks``; chunk 0 carries ``reset=True``.
    """

    def __init__(self, tokens: Sequence[int] | np.ndarray | Tensor, batch_size: int,
                 bptt: int, *, grad_accum: int = 1, eval_tokens: Any = None):
        data = torch.as_tensor(np.asarray(tokens), dtype=torch.long).reshape(-1)
        if batch_size < 1 or bptt < 1:
            raise ValueError("batch_size and bptt must be >= 1")
        n = data.numel() // batch_size
        if n < bptt + 1:
            raise ValueError(f"{data.numel()} tokens are too few for batch_size={batch_size} "
                             f"and bptt={bptt} (need at least {batch_size * (bptt + 1)})")
        self.rows = data[: n * batch_size].view(batch_size, n)  # (B, n)
        self.batch_size, self.bptt, self.grad_accum = batch_size, bptt, grad_accum
        self.n_chunks = (n - 1) // bptt
        self.eval_source = None if eval_tokens is None else \
            TBPTTBatches(eval_tokens, batch_size, bptt)

    def chunk(self, i: int) -> dict:
        s = i * self.bptt
        return {"input_ids": self.rows[:, s:s + self.bptt],
                "labels": self.rows[:, s + 1:s + 1 + self.bptt], "reset": i == 0}

    def __iter__(self) -> Iterator[dict]:
        return (self.chunk(i) for i in range(self.n_chunks))

    def __len__(self) -> int:
        return self.n_chunks

    def batch(self, step: int, micro: int, rng: Any = None) -> dict:
        return self.chunk((step * self.grad_accum + micro) % self.n_chunks)

    def eval_batches(self) -> Iterator[dict]:
        return iter(self.eval_source if self.eval_source is not None else self)


register_model("rnn_lm", RNNLM, RNNLMConfig)


# ====================================================================== seq2seq

@dataclass
class Seq2SeqConfig:
    """Architecture of a :class:`Seq2Seq` encoder-decoder."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    src_vocab: int | None = None  # None: taken from the tokenizer when the run is built
    tgt_vocab: int | None = None
    cell: CellName = "gru"
    d_embed: int = 128
    d_hidden: int = 256
    n_layer: int = 1
    bidirectional: bool = True  # bidirectional encoder
    attention: Literal["bahdanau", "luong", "none"] = "bahdanau"
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    fused: bool = True

    def __post_init__(self) -> None:
        _check_common(self)
        if self.attention not in ("bahdanau", "luong", "none"):
            raise ValueError(f"attention must be one of bahdanau, luong, none; "
                             f"got {self.attention!r}")
        for name in ("src_vocab", "tgt_vocab"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        check_special_ids(self, "src_vocab", "tgt_vocab")


@dataclass
class Encoded:
    """What the decoder needs from the encoder."""

    memory: Tensor  # (B, S, D_enc) encoder outputs, zeros past each length
    mask: Tensor  # (B, S) True for real source tokens
    keys: Tensor | None  # (B, S, A) attention's projection of memory, computed once
    state: State  # initial decoder state (L, B, H) (or (h, c))

    def index(self, index: Tensor) -> Encoded:
        """Keep (or repeat) batch rows ``index``."""
        return Encoded(self.memory.index_select(0, index), self.mask.index_select(0, index),
                       None if self.keys is None else self.keys.index_select(0, index),
                       _index_state(self.state, index))


class Seq2Seq(PretrainedMixin, nn.Module):
    """RNN encoder-decoder with attention; ``forward(src, src_lengths, tgt_in) -> logits``."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        require_vocab(config, "src_vocab", "tgt_vocab")
        self.config = cfg = config
        H, dirs = cfg.d_hidden, 2 if cfg.bidirectional else 1
        self.d_memory = H * dirs
        self.src_embed = nn.Embedding(cfg.src_vocab, cfg.d_embed, padding_idx=cfg.pad_id)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.d_embed, padding_idx=cfg.pad_id)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = make_recurrent(cfg.cell, cfg.d_embed, H, cfg.n_layer,
                                      dropout=cfg.dropout, bidirectional=cfg.bidirectional,
                                      fused=cfg.fused)
        self.bridge = nn.Linear(2 * H, H) if cfg.bidirectional else None
        self.bridge_c = nn.Linear(2 * H, H) if cfg.bidirectional and cfg.cell == "lstm" \
            else None
        # Bahdanau feeds the context into the decoder's input: [E[y_{t-1}]; c_t].
        d_in = cfg.d_embed + (self.d_memory if cfg.attention == "bahdanau" else 0)
        self.decoder = make_recurrent(cfg.cell, d_in, H, cfg.n_layer, dropout=cfg.dropout,
                                      fused=cfg.fused)
        self.attn: nn.Module | None = None
        self.combine = None
        if cfg.attention == "bahdanau":
            self.attn = AdditiveAttention(H, self.d_memory, H)
        elif cfg.attention == "luong":
            self.attn = MultiplicativeAttention(H, self.d_memory, "general")
        if self.attn is not None:
            self.combine = nn.Linear(H + self.d_memory, H)
        self.out = nn.Linear(H, cfg.tgt_vocab)

    # ------------------------------------------------------------------ encoder

    def _lengths(self, src: Tensor, src_lengths: Tensor | None) -> Tensor:
        if src_lengths is None:
            src_lengths = (src != self.config.pad_id).sum(dim=1).clamp(min=1)
        return torch.as_tensor(src_lengths).to(torch.long)

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> Encoded:
        """Run the encoder over right-padded ``src`` (B, S)."""
        cfg = self.config
        lengths = self._lengths(src, src_lengths)
        memory, state = self.encoder(self.drop(self.src_embed(src)), lengths=lengths.cpu())
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < \
            lengths.to(src.device)[:, None]  # (B, S)

        def merge(s: Tensor, bridge: nn.Linear | None) -> Tensor:
            if bridge is None:
                return s  # (L, B, H)
            L, B, H = cfg.n_layer, s.shape[1], cfg.d_hidden
            s = s.view(L, 2, B, H)  # layer-major: forward then backward of each layer
            return torch.tanh(bridge(torch.cat([s[:, 0], s[:, 1]], dim=-1)))  # (L, B, H)

        if isinstance(state, tuple):
            state = (merge(state[0], self.bridge), merge(state[1], self.bridge_c))
        else:
            state = merge(state, self.bridge)
        keys = self.attn.project_keys(memory) if self.attn is not None else None
        return Encoded(memory, mask, keys, state)

    # ------------------------------------------------------------------ decoder

    def _top(self, state: State) -> Tensor:
        return (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H)

    def _readout(self, s: Tensor, context: Tensor | None) -> Tensor:
        feat = s if context is None else torch.tanh(self.combine(torch.cat([s, context], -1)))
        return self.out(self.drop(feat))

    def decode_step(self, y_prev: Tensor, state: State, enc: Encoded
                    ) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step: previous tokens (B,) -> (logits (B, V), state, weights)."""
        e = self.drop(self.tgt_embed(y_prev))  # (B, d_embed)
        kind = self.config.attention
        context = weights = None
        if kind == "bahdanau":
            context, weights = self.attn(self._top(state), enc.memory, mask=enc.mask,
                                         projected_keys=enc.keys)  # (B, D_enc), (B, S)
            e = torch.cat([e, context], dim=-1)
        out, state = self.decoder(e[:, None, :], state)  # (B, 1, H)
        s = out[:, 0]
        if kind == "luong":
            context, weights = self.attn(s, enc.memory, mask=enc.mask, projected_keys=enc.keys)
        return self._readout(s, context), state, weights

    def forward(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor,
                return_attention: bool = False):
        """Teacher-forced logits (B, T, tgt_vocab) for ``tgt_in`` (B, T) = BOS + target.

        With ``return_attention`` also the attention weights (B, T, S) (None for
        ``attention='none'``).
        """
        enc = self.encode(src, src_lengths)
        if self.config.attention == "bahdanau":  # the context feeds the input: step by step
            state, logits, weights = enc.state, [], []
            for t in range(tgt_in.shape[1]):
                z, state, w = self.decode_step(tgt_in[:, t], state, enc)
                logits.append(z)
                weights.append(w)
            out = torch.stack(logits, dim=1)
            attn = torch.stack(weights, dim=1)
        else:  # the whole target in one recurrent call
            s, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), enc.state)  # (B, T, H)
            context = attn = None
            if self.attn is not None:
                context, attn = self.attn(s, enc.memory, mask=enc.mask, projected_keys=enc.keys)
            out = self._readout(s, context)
        return (out, attn) if return_attention else out

    def _stepper(self, enc: Encoded):
        """Callbacks for :mod:`lmforge.models.beam`: ``step`` advances the decoder state by
        one token per row; ``reorder`` keeps (or repeats) rows of it."""
        holder = {"state": enc.state}

        def step(y: Tensor) -> Tensor:
            logits, holder["state"], _ = self.decode_step(y, holder["state"], enc)
            return logits

        def reorder(rows: Tensor) -> None:
            holder["state"] = _index_state(holder["state"], rows)

        return step, reorder

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, src_lengths: Tensor | None = None,
                      max_len: int = 50, no_repeat_ngram_size: int = 0) -> Tensor:
        """Most likely next token at every step -> (B, L) ids after BOS.

        Each row ends with EOS (unless it reached ``max_len``) and is padded with
        ``pad_id`` after it.
        """
        cfg = self.config
        step, _ = self._stepper(self.encode(src, src_lengths))
        return greedy_search(step, src.shape[0], max_len=max_len, bos_id=cfg.bos_id,
                             eos_id=cfg.eos_id, pad_id=cfg.pad_id,
                             banned_ids=(cfg.pad_id, cfg.bos_id),
                           no_repeat_ngram_size=no_repeat_ngram_size, device=src.device)

    @torch.no_grad()
    def beam_search(self, src: Tensor, src_lengths: Tensor | None = None, beam_size: int = 4,
                    max_len: int = 50, alpha: float = 0.6, n_best: int = 1,
                    no_repeat_ngram_size: int = 0
                    ) -> list[list[Hypothesis]]:
        """Beam search with the GNMT length penalty (rules in :mod:`lmforge.models.beam`);
        for each source the ``n_best`` hypotheses, best score first."""
        cfg, B = self.config, src.shape[0]
        enc = self.encode(src, src_lengths).index(
            torch.arange(B, device=src.device).repeat_interleave(beam_size))  # (B*K, ...)
        step, reorder = self._stepper(enc)
        return beam_search(step, reorder, B, beam_size=beam_size, max_len=max_len,
                           bos_id=cfg.bos_id, eos_id=cfg.eos_id, alpha=alpha, n_best=n_best,
                           banned_ids=(cfg.pad_id, cfg.bos_id),
                           no_repeat_ngram_size=no_repeat_ngram_size, device=src.device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Seq2SeqObjective:
    """Teacher-forced cross-entropy for the trainer: ``objective(model, batch)``.

    A batch is ``{"src": (B, S), "src_lengths": (B,), "tgt_in": (B, T),
    "tgt_out": (B, T)}`` (see :func:`collate_pairs`); ``pad_id`` labels are ignored.
    """

    name = "seq2seq"

    def __call__(self, model: nn.Module, batch: dict):
        pad = model.config.pad_id
        logits = model(batch["src"], batch.get("src_lengths"), batch["tgt_in"])
        y = batch["tgt_out"]
        loss, n = token_cross_entropy(logits, y, pad)
        return loss, {}, n


def collate_pairs(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None,
                  *, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> dict[str, Tensor]:
    """Right-pad token-id lists into a seq2seq batch.

    ``src`` -> ``src`` (B, S) and ``src_lengths``; ``tgt`` (optional) ->
    ``tgt_in`` = BOS + y and ``tgt_out`` = y + EOS, both (B, T) padded with ``pad_id``.
    """
    if not src or any(len(s) == 0 for s in src):
        raise ValueError("every source sequence needs at least one token")
    S = max(len(s) for s in src)
    batch = {"src": torch.tensor([list(s) + [pad_id] * (S - len(s)) for s in src]),
             "src_lengths": torch.tensor([len(s) for s in src])}
    if tgt is not None:
        if len(tgt) != len(src):
            raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
        T = max(len(t) for t in tgt) + 1
        batch["tgt_in"] = torch.tensor([[bos_id] + list(t) + [pad_id] * (T - 1 - len(t))
                                        for t in tgt])
        batch["tgt_out"] = torch.tensor([list(t) + [eos_id] + [pad_id] * (T - 1 - len(t))
                                         for t in tgt])
    return batch


def strip_ids(ids: Sequence[int], eos_id: int, pad_id: int) -> list[int]:
    """Tokens before the first EOS (and without padding)."""
    out = []
    for t in ids:
        t = int(t)
        if t == eos_id:
            break
        if t != pad_id:
            out.append(t)
    return out


register_model("seq2seq_rnn", Seq2Seq, Seq2SeqConfig)

__all__ = ["RNNLM", "RNNLMConfig", "TBPTTObjective", "TBPTTBatches", "detach_state",
           "Seq2Seq", "Seq2SeqConfig", "Seq2SeqObjective", "Hypothesis", "Encoded",
           "collate_pairs", "strip_ids", "make_recurrent"]
