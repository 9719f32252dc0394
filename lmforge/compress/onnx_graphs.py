r"""What an lmforge model looks like as an ONNX graph: named tensors in, named tensors out.

A graph has no Python objects, so each family gets a small ``nn.Module`` view that takes
and returns plain tensors, with one name per tensor and the axes that may change size
(*dynamic axes*: ``batch``, ``seq``, ``past``, ``total``, ``words``) named too.
:func:`graph_spec` builds it, with example inputs to trace.

**Decoders** (``arch: gpt``, GPT-2 and Llama style). Decoding one token at a time must
not recompute the prefix, so the keys and values of every layer travel through the graph
as inputs and outputs (the layout of Hugging Face Optimum's exports)::

    inputs   input_ids (batch, seq) int64         the new tokens
             attention_mask (batch, total) int64  1 = real, 0 = padding, over past + new
             past_key.i, past_value.i             (batch, h_kv, past, d_h), i = 0..L-1
    outputs  logits (batch, seq, V)
             present_key.i, present_value.i       (batch, h_kv, total, d_h)

with ``total = past + seq``. ``present = concat(past, new)`` along the position axis, so
the caller feeds each step's presents back as the next step's past. The first step
(prefill) gets a past of length 0. Positions count real tokens only and the mask is
causal over past + new and never attends to padding (a query always sees itself, so a
padding row stays finite), the rules of :class:`lmforge.models.gpt.GPT` for left-padded
batches::

    p_t = (sum_{j <= t} mask_j) - 1 (at least 0),   the last ``seq`` of the ``total`` columns
    M_ij = [j <= i and mask_j = 1] or [j = i]       query i in past..total-1, key j < total

The eager model skips this mask when nothing is padded (a fused causal kernel); the graph
cannot branch on tensor values, so it always applies it: the same numbers.

**Encoders** (``bert``, ``deberta_v2``): ``input_ids``, ``attention_mask`` (and
``token_type_ids`` when the model has a token-type table), axes ``batch`` and ``seq``;
the outputs are those of ``forward`` for the model's head: ``last_hidden_state`` (no
head), ``logits`` (MLM, sequence or token classification), ``nsp_logits``,
``start_logits`` and ``end_logits`` (span QA).

**Task models** (``task``, :mod:`lmforge.tasks.model`): the batch tensors its forward
reads, the same names: plus ``word_index`` (batch, words) for ``tag``, ``head_pos`` and
``tail_pos`` (batch,) for ``relate``. The output is what the predictor reads:
``logits`` (batch, C) for classify and relate, (batch, seq, 2) for extract, and
``emissions`` (batch, words, K) for tag (a CRF's Viterbi decoding stays outside the graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.export import Dim

from ..errors import ConfigError
from ..models import arch_of
from ..models.bert import BertConfig
from ..models.deberta import DebertaV2Config

EXPORTABLE = ("bert", "deberta_v2", "gpt", "task")
_BERT_OUTPUTS = {"none": ["last_hidden_state"], "mlm": ["logits"], "seq_cls": ["logits"],
                 "token_cls": ["logits"], "pretraining": ["logits", "nsp_logits"],
                 "qa": ["start_logits", "end_logits"]}


@dataclass
class GraphSpec:
    """A module taking ``len(input_names)`` tensors (the first ``named_args`` as named
    parameters, the rest as ``*args``), example inputs, the names and, per input, its
    dynamic axes (``{axis: Dim}``)."""

    arch: str
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    example: tuple[Tensor, ...]
    axes: list[dict[int, Dim]]
    named_args: int = 0

    @property
    def dynamic_shapes(self) -> tuple:
        """``axes`` grouped as ``torch.export`` wants them: one entry per named
        parameter, then one tuple for ``*args``."""
        return (*self.axes[:self.named_args], tuple(self.axes[self.named_args:]))


class PastKeyValues:
    """The part of :class:`lmforge.models.gpt.KVCache` the attention layers use, over
    graph inputs: :meth:`update` appends a layer's new keys and values to its past by
    concatenation (a graph has no preallocated buffer to write into) and keeps the result
    as that layer's present."""

    def __init__(self, keys: list[Tensor], values: list[Tensor]):
        self.keys, self.values = keys, values
        self.k, self.v = keys[0], values[0]  # the attention casts to their dtype
        self.present: list[Tensor] = []

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``k, v`` (B, h_kv, T, d_h) after layer ``layer``'s past -> (B, h_kv, P+T, d_h)."""
        k = torch.cat([self.keys[layer], k], dim=2)
        v = torch.cat([self.values[layer], v], dim=2)
        self.present += [k, v]
        return k, v


class DecoderGraph(nn.Module):
    """A GPT over ``input_ids, attention_mask, past_key.0, past_value.0, ...`` returning
    ``logits, present_key.0, present_value.0, ...`` (see the module docstring)."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *past: Tensor):
        gpt = self.gpt
        T, S = input_ids.shape[1], attention_mask.shape[1]           # S = past + T
        valid = attention_mask.bool()                                  # (B, S)
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)[:, S - T:]  # (B, T)
        q_pos = torch.arange(T, device=input_ids.device) + (S - T)      # (T,)
        k_pos = torch.arange(S, device=input_ids.device)                # (S,)
        allowed = (k_pos[None, :] <= q_pos[:, None])[None] & valid[:, None, :]
        mask = (allowed | (k_pos[None, None, :] == q_pos[None, :, None]))[:, None]  # (B,1,T,S)
        x = gpt.wte(input_ids)                                          # (B, T, d)
        if gpt.wpe is not None:
            x = x + gpt.wpe(positions)
        rope = None
        if gpt.config.pos == "rope":
            rope = (gpt.rope_cos[positions][:, None], gpt.rope_sin[positions][:, None])
        cache = PastKeyValues(list(past[0::2]), list(past[1::2]))
        for i, block in enumerate(gpt.blocks):
            x = block(x, rope, mask, cache, i)
        return (gpt.lm_head(gpt.norm_f(x)), *cache.present)


class NamedInputsGraph(nn.Module):
    """A model whose forward takes positional tensors (``task=False``) or one batch dict
    keyed by ``names`` (a task model); the outputs always come back as a tuple."""

    def __init__(self, model: nn.Module, names: list[str], task: bool):
        super().__init__()
        self.model, self.names, self.task = model, names, task

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        out = self.model(dict(zip(self.names, tensors, strict=True))) if self.task \
            else self.model(*tensors)
        return out if isinstance(out, tuple) else (out,)


@dataclass(frozen=True)
class Sizes:
    """Sizes of the example inputs: every dynamic axis above 1, so that none is
    specialised to 0 or 1 while tracing."""

    batch: int
    seq: int
    past: int
    words: int


TRACE_SIZES = Sizes(batch=2, seq=5, past=3, words=3)


def graph_spec(model: nn.Module, sizes: Sizes = TRACE_SIZES) -> GraphSpec:
    """The export view of ``model`` with example inputs of ``sizes``;
    :class:`ConfigError` for an architecture that has none (naming the ones that do)."""
    arch = arch_of(model.config)
    if arch == "gpt":
        return _decoder_spec(model, sizes)
    if arch in ("bert", "deberta_v2"):
        return _encoder_spec(model, arch, sizes)
    if arch == "task":
        return _task_spec(model, sizes)
    raise ConfigError(f"ONNX export: arch {arch!r} is not supported; allowed: "
                      f"{', '.join(EXPORTABLE)}")


def _longest(model: nn.Module) -> int:
    """The most tokens the model reads in one sequence (the ``seq`` axis' bound)."""
    cfg = model.config
    if arch_of(cfg) == "task":
        return cfg.max_length if model.scratch else min(cfg.max_length,
                                                        _longest(model.encoder))
    return cfg.max_len if hasattr(cfg, "max_len") else cfg.max_seq_len


def _random(sizes: Sizes, *shape: int, high: int | None = None) -> Tensor:
    """Reproducible example values: token ids below ``high``, else normal floats."""
    g = torch.Generator().manual_seed(sum(shape))
    if high is None:
        return torch.randn(sizes.batch, *shape, generator=g)
    return torch.randint(1, high, (sizes.batch, *shape), generator=g)


def _decoder_spec(gpt: nn.Module, sizes: Sizes) -> GraphSpec:
    cfg = gpt.config
    batch, seq = Dim("batch"), Dim("seq", max=cfg.max_seq_len)
    past, total = Dim("past", max=cfg.max_seq_len), Dim("total", max=2 * cfg.max_seq_len)
    mask = torch.ones(sizes.batch, sizes.past + sizes.seq, dtype=torch.long)
    mask[-1, :2] = 0  # left padding
    names = [f"{kind}.{i}" for i in range(cfg.n_layer) for kind in ("key", "value")]
    # one tensor per input: torch.export would take one tensor passed twice as one input
    kv = [_random(sizes, cfg.n_kv_head, sizes.past, cfg.head_dim).to(gpt.wte.weight.dtype)
          for _ in names]
    return GraphSpec("gpt", DecoderGraph(gpt),
                     ["input_ids", "attention_mask", *(f"past_{n}" for n in names)],
                     ["logits", *(f"present_{n}" for n in names)],
                     (_random(sizes, sizes.seq, high=cfg.vocab_size), mask, *kv),
                     [{0: batch, 1: seq}, {0: batch, 1: total},
                      *[{0: batch, 2: past}] * len(names)], named_args=2)


def _has_token_types(encoder: nn.Module) -> bool:
    """Whether the encoder reads ``token_type_ids`` (BERT; DeBERTa with a type table)."""
    cfg = encoder.config
    return isinstance(cfg, BertConfig) or (isinstance(cfg, DebertaV2Config)
                                           and cfg.type_vocab_size > 0)


def _sequence_inputs(encoder: nn.Module, longest: int, sizes: Sizes):
    """Names, example tensors and axes of ``input_ids, attention_mask[, token_type_ids]``
    (the last row ends in two padding positions), and the batch axis."""
    batch, seq = Dim("batch"), Dim("seq", max=longest)
    ids = _random(sizes, sizes.seq, high=encoder.config.vocab_size)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0
    names, example = ["input_ids", "attention_mask"], [ids, mask]
    if _has_token_types(encoder):
        names.append("token_type_ids")
        example.append(torch.zeros_like(ids))
    return names, example, [{0: batch, 1: seq} for _ in names], batch


def _encoder_spec(model: nn.Module, arch: str, sizes: Sizes) -> GraphSpec:
    head = model.config.head
    names, example, axes, _ = _sequence_inputs(model, _longest(model), sizes)
    outputs = _BERT_OUTPUTS[head] if arch == "bert" else \
        ["logits" if head == "mlm" else "last_hidden_state"]
    return GraphSpec(arch, NamedInputsGraph(model, names, task=False), names, outputs,
                     tuple(example), axes)


def _task_spec(model: nn.Module, sizes: Sizes) -> GraphSpec:
    cfg = model.config
    names, example, axes, batch = _sequence_inputs(model.encoder, _longest(model), sizes)
    output = "logits"
    if cfg.task == "tag":
        names.append("word_index")  # the first sub-token of each word
        first = torch.arange(1, sizes.words + 1).clamp(max=sizes.seq - 1)
        example.append(first.expand(sizes.batch, -1).contiguous())
        axes.append({0: batch, 1: Dim("words", max=cfg.max_length)})
        output = "emissions"
    elif cfg.task == "relate":  # the head and tail markers
        names += ["head_pos", "tail_pos"]
        example += [torch.full((sizes.batch,), 1), torch.full((sizes.batch,), 2)]
        axes += [{0: batch}, {0: batch}]
    return GraphSpec("task", NamedInputsGraph(model, names, task=True), names, [output],
                     tuple(example), axes)
