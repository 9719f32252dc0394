r"""Students for distillation, and whether a teacher can teach a student.

**Half students** (:func:`half_student_config`), for a GPT, a BERT or a BERT task model:
half the depth and half the width, with the teacher's head size ``d_h`` kept so that the
attention stays valid (RoPE's even head size included)::

    L' = max(1, L // 2),   h' = max(1, h // 2),   d' = d h' / h  (= h' d_h),
    d_ff' = round(d_ff d' / d),   h_kv' = gcd(h', max(1, h_kv // 2))   (GPT)

so an even head count gives ``d' = d / 2`` and about a quarter of the block parameters.
The vocabulary, the positions and the style (norms, MLP, flavour) stay the teacher's. The
student starts from a random initialisation.

**BiLSTM student** (:func:`bilstm_student_config`) for a task model: the same task and
labels, read by a from-scratch BiLSTM (:mod:`lmforge.tasks.encoders`) over the teacher's
token ids (Tang et al. 2019 distil BERT into a BiLSTM this way).

**Compatibility** (:func:`check_compatible`): the soft targets are distributions over the
teacher's outputs for the teacher's token ids, so teacher and student must read one
tokenizer (the same size and the same token -> id map) and predict the same outputs (the
same vocabulary for language models, the same task and labels for task models).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..models import model_config_class
from ..models.bert import BertConfig
from ..models.gpt import GPTConfig

# (Task models are recognised by their config's fields: this layer may not import
# lmforge.tasks, whose recipes sit above it.)


def is_task_model(model: nn.Module) -> bool:
    """A :class:`lmforge.tasks.model.TaskModel` (its config names a task)?"""
    return _is_task_config(getattr(model, "config", None))


def _is_task_config(cfg: Any) -> bool:
    """A :class:`lmforge.tasks.model.TaskModelConfig`: a task and an encoder config."""
    return dataclasses.is_dataclass(cfg) and getattr(cfg, "task", None) is not None \
        and isinstance(getattr(cfg, "encoder_config", None), dict)


def _half_heads(n_head: int, d_model: int) -> tuple[int, int]:
    """``(h', d')``: half the heads, each of the teacher's size."""
    heads = max(1, n_head // 2)
    return heads, d_model * heads // n_head


def _half_gpt(cfg: GPTConfig) -> GPTConfig:
    heads, width = _half_heads(cfg.n_head, cfg.d_model)
    return dataclasses.replace(
        cfg, n_layer=max(1, cfg.n_layer // 2), n_head=heads, d_model=width,
        n_kv_head=math.gcd(heads, max(1, cfg.n_kv_head // 2)),
        d_ff=max(1, round(cfg.d_ff * width / cfg.d_model)))


def _half_bert(cfg: BertConfig) -> BertConfig:
    heads, width = _half_heads(cfg.n_head, cfg.d_model)
    return dataclasses.replace(cfg, n_layer=max(1, cfg.n_layer // 2), n_head=heads,
                               d_model=width, d_ff=max(1, round(cfg.d_ff * width / cfg.d_model)))


def half_student_config(teacher_config: Any) -> Any:
    """A student config of half the teacher's depth and width (see the module doc), for a
    :class:`GPTConfig`, a :class:`BertConfig` or a :class:`TaskModelConfig` with a
    ``bert`` encoder (its encoder is halved; task, labels and head stay)."""
    if isinstance(teacher_config, GPTConfig):
        return _half_gpt(teacher_config)
    if isinstance(teacher_config, BertConfig):
        return _half_bert(teacher_config)
    task = _is_task_config(teacher_config)
    if task and teacher_config.encoder == "bert":
        encoder = _half_bert(BertConfig(**teacher_config.encoder_config))
        return dataclasses.replace(teacher_config, encoder_config=dataclasses.asdict(encoder),
                                   lora=None)
    what = (f"a task model with a {teacher_config.encoder} encoder"
            if task else type(teacher_config).__name__)
    raise ConfigError(f"half_student_config: cannot halve {what}; allowed: a GPT, a BERT or "
                      "a task model with a bert encoder")


def _vocab_and_pad(encoder: str, fields: dict) -> tuple[int, int]:
    """The vocabulary size and padding id of a task model's encoder config: given, or the
    architecture's defaults (a BERT's ``pad_id`` follows its flavour)."""
    if encoder in ("textcnn", "bilstm"):  # the from-scratch encoders: plain fields
        return fields.get("vocab_size"), fields.get("pad_id", 0)
    cfg = model_config_class(encoder)(**fields)
    return cfg.vocab_size, getattr(cfg, "pad_id", 0)


def bilstm_student_config(teacher_config: Any, d_emb: int = 128, hidden: int = 128,
                          pooling: str = "attention") -> Any:
    """A :class:`~lmforge.tasks.model.TaskModelConfig` of the teacher's task and labels
    with a one-layer :class:`~lmforge.tasks.encoders.BiLSTM` encoder (fields of its
    ``BiLSTMConfig``) over the teacher's vocabulary and padding id; ``pooling`` for
    classify."""
    if not _is_task_config(teacher_config):
        raise ConfigError(f"bilstm_student_config needs a task model config (got "
                          f"{type(teacher_config).__name__})")
    vocab_size, pad_id = _vocab_and_pad(teacher_config.encoder, teacher_config.encoder_config)
    if not isinstance(vocab_size, int):
        raise ConfigError("bilstm_student_config: the teacher's encoder config has no "
                          "vocab_size")
    encoder = {"vocab_size": vocab_size, "d_emb": d_emb, "hidden": hidden, "n_layer": 1,
               "dropout": teacher_config.dropout, "pad_id": pad_id}
    return dataclasses.replace(teacher_config, encoder="bilstm", encoder_config=encoder,
                               pooling=pooling, attention_dim=None, lora=None)


def check_same_outputs(teacher: nn.Module, student: nn.Module) -> None:
    """ConfigError unless both predict the same outputs: one vocabulary for language
    models, the same task and labels for task models."""
    t_task, s_task = is_task_model(teacher), is_task_model(student)
    if t_task != s_task:
        kinds = {True: "a task model", False: "a language model"}
        raise ConfigError(f"distill: the teacher is {kinds[t_task]} but the student is "
                          f"{kinds[s_task]}; both must be of one kind")
    tc, sc = teacher.config, student.config
    if t_task:
        if tc.task != sc.task or list(tc.labels) != list(sc.labels):
            raise ConfigError(f"distill: the teacher predicts {tc.task} labels {tc.labels} "
                              f"but the student {sc.task} labels {sc.labels}; they must be "
                              "the same")
        return
    t_vocab, s_vocab = getattr(tc, "vocab_size", None), getattr(sc, "vocab_size", None)
    if t_vocab != s_vocab:
        raise ConfigError(f"distill: the teacher's vocabulary has {t_vocab} tokens but the "
                          f"student's has {s_vocab}; a student must predict over the "
                          "teacher's vocabulary")


def _tokenizer_size(tokenizer: Any) -> int:
    size = getattr(tokenizer, "vocab_size", None)
    return size if isinstance(size, int) else len(tokenizer)


def check_compatible(teacher: nn.Module, student: nn.Module, teacher_tokenizer: Any,
                     student_tokenizer: Any) -> None:
    """ConfigError (one line, naming both sizes) unless the teacher can teach the student:
    the same tokenizer vocabulary (size and token -> id map, where both tokenizers have
    ``get_vocab()``) and the same outputs (:func:`check_same_outputs`)."""
    t_size, s_size = _tokenizer_size(teacher_tokenizer), _tokenizer_size(student_tokenizer)
    if t_size != s_size:
        raise ConfigError(f"distill: the teacher's tokenizer has {t_size} tokens but the "
                          f"student's has {s_size}; teacher and student must share one "
                          "vocabulary (train the student with the teacher's tokenizer)")
    t_get, s_get = (getattr(t, "get_vocab", None)
                    for t in (teacher_tokenizer, student_tokenizer))
    if callable(t_get) and callable(s_get):
        t_map, s_map = t_get(), s_get()
        moved = sorted(tok for tok in t_map.keys() | s_map.keys()
                       if t_map.get(tok) != s_map.get(tok))
        if moved:
            tok = moved[0]
            raise ConfigError(f"distill: the teacher's tokenizer ({t_size} tokens) and the "
                              f"student's ({s_size} tokens) map {len(moved)} tokens to "
                              f"other ids (e.g. {tok!r}: {t_map.get(tok)} vs "
                              f"{s_map.get(tok)}); they must share one vocabulary")
    check_same_outputs(teacher, student)


__all__ = ["half_student_config", "bilstm_student_config", "check_compatible",
           "check_same_outputs", "is_task_model"]
