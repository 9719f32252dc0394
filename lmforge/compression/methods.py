"""The steps of each ``lmforge compress`` method: ``method(job) -> (model, details)``.

Each step takes a fresh copy of the parent, compresses it with :mod:`lmforge.compress`,
fine-tunes it on the parent's data where the method needs that, and returns the model
with the method's own figures for the report (sparsity, kept heads, ranks, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .command import CompressOptions, Job


def default_finetune_steps(job: Job) -> int:
    """Recovery fine-tuning: a fifth of the parent's training steps, at least 50."""
    return job.steps(max(50, job.parent.recipe.train.max_steps // 5))


def _sensitivity(job: Job, quantize_layer: Callable[[nn.Linear], nn.Module]) -> dict:
    """``--sensitivity``: each linear layer quantised alone, worst first."""
    if not job.options.sensitivity:
        return {}
    from ..compress.sensitivity import layer_sensitivity, sensitivity_table

    key, higher = job.parent.headline
    job.log(f"sensitivity: quantising one layer at a time, scoring {key}")
    rows = layer_sensitivity(job.parent.fresh_model(), quantize_layer, job.parent.score,
                             higher_is_better=higher)
    job.log(sensitivity_table(rows))
    return {"sensitivity": {"metric": key, "layers": rows}}


def int8(job: Job, mode: str) -> tuple[nn.Module, dict]:
    from ..compress.quantize import Int8Linear, quantize_int8

    details = _sensitivity(job, lambda lin: Int8Linear(lin, mode))
    return quantize_int8(job.parent.fresh_model(), mode), details


# (temperature, alpha) by default. A language model's teacher, at T = 1, is an estimate of
# the data's own next-token distribution: a denser target than the one sampled token, and
# flattening it (T > 1) would move the target away from that distribution. Measured on the
# quickstart GPT (half student, 900 steps): T 1, alpha 0.9 gives 32.79 bits per sentence
# against 32.90 for the student alone and 32.81 for the teacher; T 2, alpha 0.5 gives
# 32.91. A classifier's soft labels carry the similarity between classes that T = 2
# brings out (DistilBERT's T 2, alpha 0.5).
DISTILL_LM = (1.0, 0.9)
DISTILL_CLASSIFIER = (2.0, 0.5)


def distill(job: Job) -> tuple[nn.Module, dict]:
    from ..compress.distill import DistillObjective
    from ..compress.distill_students import (
        bilstm_student_config,
        check_compatible,
        half_student_config,
    )
    from ..models import arch_of, build_model

    o, parent = job.options, job.parent
    teacher = parent.model
    lm = parent.kind == "lm"
    if o.temperature is None:
        o.temperature = DISTILL_LM[0] if lm else DISTILL_CLASSIFIER[0]
    if o.alpha is None:
        o.alpha = DISTILL_LM[1] if lm else DISTILL_CLASSIFIER[1]
    if o.student == "half":
        cfg = half_student_config(teacher.config)
    elif o.student == "bilstm":
        if parent.kind != "task":
            raise ConfigError("--student bilstm is for task models; a language model's "
                              "student is 'half' or a model folder")
        cfg = bilstm_student_config(teacher.config)
    else:
        cfg = None
    if cfg is not None:
        torch.manual_seed(parent.recipe.run.seed)
        student, student_tok = build_model(cfg), parent.tokenizer
    else:
        from ..hub import load_pretrained

        student, student_tok = load_pretrained(o.student, require_tokenizer=True)
        student.train()
    check_compatible(teacher, student, parent.tokenizer, student_tok)
    objective = DistillObjective(teacher, o.temperature, o.alpha, o.hidden_weight,
                                 student=student if o.hidden_weight > 0 else None,
                                 seed=parent.recipe.run.seed)
    steps = job.steps(parent.recipe.train.max_steps)
    job.log(f"distilling into a {arch_of(student.config)} student with "
            f"{sum(p.numel() for p in student.parameters()):,} parameters")
    # Muon needs stacked hidden matrices; a BiLSTM student trains with AdamW (at 1e-3
    # unless --lr says otherwise: the teacher's rate suits fine-tuning, not a fresh LSTM)
    recurrent = o.student == "bilstm"
    student = job.finetune(student, steps, objective=objective,
                           optimizer="adamw" if recurrent else None,
                           lr=(o.lr or 1e-3) if recurrent else o.lr)
    return student, {"student": o.student, "steps": steps}


def int4(job: Job) -> tuple[nn.Module, dict]:
    """Weight-only int4 for every linear layer (a tied head gets its own copy); with
    ``--embeddings int8`` the embedding tables become int8 too."""
    from ..compress.int4 import Int4Linear, quantize_int4
    from ..compress.quantize import quantize_embeddings_int8

    o = job.options
    details = _sensitivity(job, lambda lin: Int4Linear.from_linear(lin, o.group_size))
    model = quantize_int4(job.parent.fresh_model(), o.group_size)
    if o.embeddings == "int8":
        quantize_embeddings_int8(model)
    return model, details


def parse_ranks(text: str) -> dict[str, int]:
    """``--ranks 'qkv=16,mlp.*=24'``: a rank per layer-name pattern."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        pattern, sep, value = item.partition("=")
        if not sep or not pattern or not value.strip().isdigit():
            raise ConfigError(f"--ranks: expected PATTERN=RANK items separated by commas, "
                              f"got {item!r}")
        out[pattern.strip()] = int(value)
    if not out:
        raise ConfigError("--ranks is empty")
    return out


def lowrank(job: Job) -> tuple[nn.Module, dict]:
    """Truncated SVD of the linear layers, then fine-tuning of both factors."""
    from ..compress.lowrank import factorize

    o, parent = job.options, job.parent
    steps = default_finetune_steps(job)
    model = parent.fresh_model()
    if job.resume:
        return job.finetune(model, steps), {"finetune_steps": steps}
    rank = parse_ranks(o.ranks) if o.ranks is not None else o.rank
    energy = 0.9 if o.energy is None else o.energy
    report = factorize(model, rank=rank, energy=None if rank is not None else energy)
    job.log(report.table())
    model = job.finetune(model, steps)
    return model, {"layers": report.layers, "finetune_steps": steps}


SPARSE_FILE = "sparse.safetensors"


def prune(job: Job) -> tuple[nn.Module, dict]:
    """Magnitude pruning, one-shot then fine-tuned with the masks fixed, or gradual on Zhu
    & Gupta's schedule over the first two thirds of the fine-tuning. Also writes the
    weights in bitmask + values form (``sparse.safetensors``) for the real sparse size."""
    from ..compress.prune import (
        PruningCallback,
        SparsitySchedule,
        prune_magnitude,
        sparsity_report,
    )
    from ..compress.sparse_format import dense_bytes, save_sparse, sparse_bytes

    o = job.options
    steps = default_finetune_steps(job)
    if o.schedule == "gradual" and steps < 2:
        raise ConfigError("--schedule gradual prunes while fine-tuning: give --steps >= 2")
    model = job.parent.fresh_model()
    if o.schedule == "oneshot":
        prune_magnitude(model, o.sparsity, o.scope)
        schedule = SparsitySchedule(o.sparsity)
    else:
        every = max(1, steps // 20)
        schedule = SparsitySchedule(o.sparsity, every=every,
                                    n_steps=max(1, (2 * steps // 3) // every))
    model = job.finetune(model, steps, callbacks=[PruningCallback(schedule, o.scope)])
    job.out.mkdir(parents=True, exist_ok=True)
    save_sparse(model, job.out / SPARSE_FILE)
    report = sparsity_report(model)
    return model, {"sparsity": {"overall": report["overall"], "layers": report["layers"]},
                   "dense_bytes": dense_bytes(model),
                   "sparse_bytes": {"bitmask": sparse_bytes(model, "bitmask"),
                                    "csr": sparse_bytes(model, "csr")},
                   "sparse_file_bytes": (job.out / SPARSE_FILE).stat().st_size,
                   "finetune_steps": steps}


def prune_structured(job: Job) -> tuple[nn.Module, dict]:
    """Removes the least important heads and FFN neurons (scored on the parent's training
    batches with its own loss), then fine-tunes."""
    from ..compress.structured import structured_prune

    o, parent = job.options, job.parent
    model = parent.fresh_model()
    steps = default_finetune_steps(job)
    if job.resume:
        model = job.finetune(model, steps)  # the checkpoint holds the pruned shapes
        return model, {"finetune_steps": steps}
    job.log(f"scoring heads and FFN neurons on {o.score_batches} training batches")
    report = structured_prune(model, o.heads, o.ffn, parent.batches(o.score_batches, model),
                              parent.loss_fn(model), ffn_multiple=o.ffn_multiple)
    job.log(f"kept {report.n_head[1]} of {report.n_head[0]} heads and {report.d_ff[1]} of "
            f"{report.d_ff[0]} FFN neurons per layer")
    model = job.finetune(model, steps)
    return model, {"structure": report.to_dict(), "finetune_steps": steps}


def check_options(o: CompressOptions) -> None:
    """The checks of the options that need no model, made before the parent is loaded and
    scored (which takes minutes on a large model), so a mistyped option fails at once."""
    from ..compress.distill import check_distill_settings
    from ..compress.int4 import check_group_size
    from ..compress.prune import check_sparsity

    if o.method == "prune":
        check_sparsity(o.sparsity, "--sparsity")
        if o.scope not in ("layer", "global"):
            raise ConfigError(f"--scope must be layer or global, got {o.scope!r}")
        if o.schedule not in ("oneshot", "gradual"):
            raise ConfigError(f"--schedule must be oneshot or gradual, got {o.schedule!r}")
    elif o.method == "prune-structured":
        check_sparsity(o.heads, "--heads")
        check_sparsity(o.ffn, "--ffn")
    elif o.method == "int4":
        check_group_size(o.group_size)
        if o.embeddings not in ("fp32", "int8"):
            raise ConfigError(f"--embeddings must be fp32 or int8, got {o.embeddings!r}")
    elif o.method == "lowrank":
        if sum(x is not None for x in (o.rank, o.ranks, o.energy)) > 1:
            raise ConfigError("give one of --rank, --ranks or --energy")
        if o.ranks is not None:
            parse_ranks(o.ranks)
        if o.rank is not None and o.rank < 1:
            raise ConfigError(f"--rank must be >= 1, got {o.rank}")
        if o.energy is not None and not 0.0 < o.energy <= 1.0:
            raise ConfigError(f"--energy must be in (0, 1], got {o.energy}")
    elif o.method == "distill":
        check_distill_settings(1.0 if o.temperature is None else o.temperature,
                               0.5 if o.alpha is None else o.alpha)
        if o.hidden_weight < 0:
            raise ConfigError(f"--hidden-weight must be >= 0, got {o.hidden_weight}")


METHOD_FUNCTIONS: dict[str, Callable[[Job], tuple[nn.Module, dict[str, Any]]]] = {
    "int8": lambda job: int8(job, "weight-only"),
    "int8-dynamic": lambda job: int8(job, "dynamic"),
    "distill": distill,
    "prune": prune,
    "prune-structured": prune_structured,
    "int4": int4,
    "lowrank": lowrank,
}
