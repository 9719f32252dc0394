r"""One model for every understanding task: an encoder, a pooling and a head.

The encoder turns token ids into hidden states ``H`` (B, T, d): any lmforge encoder
(BERT/RoBERTa ``bert``, DeBERTa ``deberta_v2``; pretrained or not) or one trained from
scratch here (``textcnn``, ``bilstm``, :mod:`lmforge.tasks.encoders`). The head by task:

**classify** (one label per text or text pair)::

    z = pool(H)                    cls: H[:, 0]     pooler: tanh(W_p H[:, 0] + b_p) (BERT's)
                                   mean / max: over real tokens   attention: see encoders
                                   last: H at the last real token (a decoder: the only
                                   state that has read the whole text)
    logits = W_c Dropout(z) + b_c                                            (B, C)

**tag** (one label per word; a word's state is that of its first sub-token)::

    e_w = W_c Dropout(H[first sub-token of w]) + b_c                        (B, W, K)
    head linear: p(y_w) = softmax(e_w);  head crf: p(y) = CRF(e) (:mod:`lmforge.nn.crf`)

Decoding is Viterbi restricted to legal tag sequences of the scheme (``constrained``),
for the softmax head too (log-probabilities as emissions, zero transition scores).

**relate** (the relation of a marked head and tail entity; Zhou & Chen 2021, OpenNRE):
the text carries markers around both entities (``@ ... @`` for the head, ``# ... #`` for
the tail; typed: ``@ * person * Anna @``), and the representation is read at the two
start markers::

    logits = W_c Dropout([H[start(@)] ; H[start(#)]]) + b_c                  (B, C)

**extract** (a span of the context answers the question; the input is a window
``[CLS] question [SEP] context chunk [SEP]``, :mod:`lmforge.tasks.qa_spans`): a start and
an end logit per token, ``labels`` are ``["start", "end"]``::

    [s_t, e_t] = W Dropout(H_t) + b,   W in R^{d x 2}                        (B, T, 2)

The loss, the n-best decoding and the no-answer rule are in :mod:`lmforge.tasks.extractive`.

The model is registered as ``arch: task``: a fine-tuning run's checkpoints are ordinary
lmforge model folders (``config.json`` holds this config, with the encoder's config and,
for LoRA runs, the adapter settings, so the same modules are rebuilt on load). A
multi-task model (:mod:`lmforge.tasks.multitask_model`) puts several of these heads
(:class:`TaskHead`) on one shared encoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..models import model_config_class, register_model
from ..models.base import PretrainedMixin
from ..models.bert import BertModel
from ..nn.crf import CRF, viterbi
from .encoders import AttentionPool, BiLSTM, BiLSTMConfig, TextCNN, TextCNNConfig

TASKS = ("classify", "tag", "relate", "extract")
SCRATCH_ENCODERS = {"textcnn": (TextCNN, TextCNNConfig), "bilstm": (BiLSTM, BiLSTMConfig)}
POOLINGS = ("cls", "pooler", "mean", "max", "attention", "last")


@dataclass
class TaskModelConfig:
    task: str = "classify"
    labels: list[str] = field(default_factory=list)
    encoder: str = "bert"                     # bert | deberta_v2 | gpt | textcnn | bilstm
    encoder_config: dict = field(default_factory=dict)
    pooling: str = "cls"                      # classify: cls|pooler|mean|max|attention|last
    attention_dim: int | None = None          # classify, attention pooling: W's rows (d)
    head: str = "linear"                      # tag: linear | crf
    dropout: float = 0.1
    scheme: str = "IOB2"                      # tag: the tag scheme of ``labels``
    constrained: bool = True                  # tag: Viterbi over legal sequences only
    lora: dict | None = None                  # LoraConfig fields once LoRA is applied
    max_length: int = 128                     # tokens per input, specials included
    typed_markers: bool = True                # relate: '@ * person * Anna @'
    no_relation: str = "no_relation"          # relate: the negative label
    threshold: float | None = None            # relate: see lmforge.tasks.evaluation.decide
    doc_stride: int = 128                     # extract: tokens shared by consecutive windows
    max_answer_length: int = 30               # extract: longest answer, in tokens
    n_best: int = 20                          # extract: start/end candidates per window
    with_null: bool = False                   # extract: may answer "" (SQuAD v2.0)
    null_threshold: float = 0.0               # extract: "" when null - best span > this

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)} (got {self.task!r})")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be at least 2 distinct names (got {self.labels})")
        if self.task == "extract" and self.labels != ["start", "end"]:
            raise ValueError(f"extract labels are ['start', 'end'] (got {self.labels})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        if self.head not in ("linear", "crf"):
            raise ValueError("head must be linear or crf")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")


def build_encoder(name: str, cfg: dict) -> tuple[nn.Module, int]:
    """The encoder ``name`` with config fields ``cfg`` -> (module, hidden size d)."""
    if name in SCRATCH_ENCODERS:
        cls, cfg_cls = SCRATCH_ENCODERS[name]
        enc = cls(cfg_cls(**cfg))
        return enc, enc.hidden_size
    from ..models import build_model

    config = model_config_class(name)(**cfg)
    if getattr(config, "head", "none") != "none":
        config = dataclasses.replace(config, head="none")
    return build_model(config), config.d_model


def encoder_states(encoder: nn.Module, batch: dict, scratch: bool, cls_only: bool,
                   skip_padding: bool = False) -> Tensor:
    """The encoder's hidden states ``H`` (B, T, d) of a batch; ``cls_only`` (a head that
    reads [CLS] only): the last layer computes the [CLS] state alone, (B, 1, d).
    ``skip_padding``: a BERT runs on the real tokens only (``BertModel.encode(unpad=True)``:
    zeros at padding, which no head reads, the same numbers elsewhere)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if scratch:
        return encoder(ids, mask)
    if isinstance(encoder, BertModel):
        return encoder.encode(ids, mask, batch.get("token_type_ids"), cls_only=cls_only,
                              unpad=skip_padding)
    return encoder.encode(ids, mask, batch.get("token_type_ids"))


class HeadLayers:
    """The layers one task puts on the encoder's states (pooling, dropout, ``W_c``, the
    CRF) and how they read them: the formulas of the module docstring. Shared by
    :class:`TaskModel` (an encoder and one head, the layers at its top level) and
    :class:`TaskHead` (one of the heads of a multi-task model over a shared encoder,
    :mod:`lmforge.tasks.multitask_model`)."""

    config: TaskModelConfig

    def _add_head(self, cfg: TaskModelConfig, d: int, encoder: nn.Module) -> None:
        self.cls_only = cfg.encoder == "bert" and cfg.task == "classify" \
            and cfg.pooling in ("cls", "pooler")
        self.drop = nn.Dropout(cfg.dropout)
        n_in = 2 * d if cfg.task == "relate" else d
        self.classifier = nn.Linear(n_in, len(cfg.labels))
        self.attn_pool = AttentionPool(d, cfg.attention_dim) if cfg.task == "classify" \
            and cfg.pooling == "attention" else None
        self.crf = CRF(len(cfg.labels)) if cfg.task == "tag" and cfg.head == "crf" else None
        if cfg.task == "classify" and cfg.pooling == "pooler" \
                and getattr(encoder, "pooler", None) is None:
            raise ValueError(f"pooling=pooler needs an encoder with a pooler "
                             f"({cfg.encoder} has none); use cls or mean")
        nn.init.normal_(self.classifier.weight, 0.0, 0.02)
        nn.init.zeros_(self.classifier.bias)
        self._allowed: tuple[Tensor, Tensor, Tensor] | None = None

    def pool_states(self, h: Tensor, mask: Tensor, encoder: nn.Module) -> Tensor:
        how = self.config.pooling
        if how == "cls":
            return h[:, 0]
        if how == "pooler":
            return encoder.pool(h)
        if how == "attention":
            return self.attn_pool(h, mask)
        if how == "last":
            last = mask.long().sum(1).clamp(min=1) - 1                  # (B,)
            return h[torch.arange(h.shape[0], device=h.device), last]
        m = mask.bool().unsqueeze(-1)
        if how == "max":
            return h.masked_fill(~m, float("-inf")).amax(1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1)                   # mean

    def head_logits(self, h: Tensor, batch: dict, encoder: nn.Module) -> Tensor:
        """The task's logits from the hidden states ``h`` (B, T, d) of ``batch``."""
        task = self.config.task
        if task == "classify":
            z = self.pool_states(h, batch["attention_mask"], encoder)
        elif task == "relate":
            rows = torch.arange(h.shape[0], device=h.device)
            z = torch.cat([h[rows, batch["head_pos"]], h[rows, batch["tail_pos"]]], dim=-1)
        elif task == "extract":
            z = h                                                       # every token
        else:
            idx = batch["word_index"]                                   # (B, W)
            z = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return self.classifier(self.drop(z))

    # ------------------------------------------------------------------ tagging

    def allowed(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """The legal (start, transition, end) masks of the scheme, when constrained."""
        if not self.config.constrained:
            return None
        if self._allowed is None:
            from ..data.tags import allowed_transitions

            self._allowed = allowed_transitions(self.config.labels, self.config.scheme)
        return self._allowed

    def decode_tags(self, emissions: Tensor, word_mask: Tensor) -> list[list[int]]:
        """Best legal tag ids per word (Viterbi; CRF scores or softmax log-probs)."""
        mask = word_mask.bool()
        if self.crf is not None:
            return self.crf.decode(emissions.float(), mask, self.allowed())
        logp = torch.log_softmax(emissions.float(), -1)
        K = logp.shape[-1]
        zeros = logp.new_zeros(K)
        return viterbi(logp, mask, zeros, logp.new_zeros(K, K), zeros, self.allowed())


class TaskModel(HeadLayers, PretrainedMixin, nn.Module):
    """``forward(batch)`` -> logits: (B, C) for classify/relate, (B, W, K) emissions for tag,
    (B, T, 2) start and end logits for extract.

    ``skip_padding`` (False; :func:`lmforge.tasks.finetune.fit_and_load_best` sets it while
    it trains): a BERT encoder runs on the real tokens only, its states at padding zeros.
    Off, the states at padding are what the model computes there, as an exported graph
    gives them, and every layer sees batch-first activations, as Opacus needs.

    ``batch`` holds ``input_ids``, ``attention_mask`` (B, T), optionally
    ``token_type_ids``; tag batches ``word_index`` (B, W) (the first sub-token of each
    word) and ``word_mask``; relate batches ``head_pos``/``tail_pos`` (B,).
    """

    skip_padding = False

    def __init__(self, config: TaskModelConfig):
        super().__init__()
        self.config = cfg = config
        self.encoder, d = build_encoder(cfg.encoder, cfg.encoder_config)
        self.scratch = cfg.encoder in SCRATCH_ENCODERS
        self._add_head(cfg, d, self.encoder)
        if cfg.lora:
            from ..nn.lora import LoraConfig, apply_lora

            apply_lora(self.encoder, LoraConfig(**cfg.lora))

    def hidden(self, batch: dict) -> Tensor:
        return encoder_states(self.encoder, batch, self.scratch, self.cls_only,
                              self.skip_padding)

    def pool(self, h: Tensor, mask: Tensor) -> Tensor:
        return self.pool_states(h, mask, self.encoder)

    def forward(self, batch: dict) -> Tensor:
        return self.head_logits(self.hidden(batch), batch, self.encoder)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TaskHead(HeadLayers, nn.Module):
    """One task's head over a shared encoder's states: ``head_logits(h, batch, encoder)``
    (the encoder is read for BERT's pooler only; the head does not hold it)."""

    def __init__(self, config: TaskModelConfig, d: int, encoder: nn.Module):
        super().__init__()
        self.config = config
        self._add_head(config, d, encoder)


def task_config_from(task: str, labels: list[str], encoder: str, encoder_config: Any,
                     **head: Any) -> TaskModelConfig:
    """A :class:`TaskModelConfig` from an encoder config dataclass (or dict)."""
    enc = dataclasses.asdict(encoder_config) if dataclasses.is_dataclass(encoder_config) \
        else dict(encoder_config)
    if "head" in enc:
        enc["head"] = "none"
    return TaskModelConfig(task=task, labels=list(labels), encoder=encoder,
                           encoder_config=enc, **head)


register_model("task", TaskModel, TaskModelConfig)
