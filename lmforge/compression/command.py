"""``lmforge compress RUN --method M --out DIR``: compress a trained model into a folder.

Every method takes the parent (:mod:`lmforge.compression.parent`), returns a smaller or
faster model, and the result is written as an ordinary lmforge model folder, so
``generate``, ``evaluate``, ``predict`` and ``serve`` load it unchanged::

    DIR/config.json, model.safetensors, tokenizer.json
    DIR/lmforge.json    # + "compression": method, parameters, the parent and the SHA-256
                        #   of its weights; "modules": swapped layers (int8, int4, low rank)
    DIR/report.json     # parameters, size on disk and quality, before and after
    DIR/finetune/       # the recovery fine-tuning or distillation run (metrics, plot)

The methods (each module's docstring gives its math):

- ``prune``: unstructured magnitude pruning, then fine-tuning (:mod:`lmforge.compress.prune`);
- ``prune-structured``: attention heads and FFN neurons removed, then fine-tuning
  (:mod:`lmforge.compress.structured`);
- ``int8``, ``int8-dynamic``: int8 weights, and activations (:mod:`lmforge.compress.quantize`);
- ``int4``: weight-only int4 in groups (:mod:`lmforge.compress.int4`);
- ``lowrank``: truncated SVD of the linear layers, then fine-tuning
  (:mod:`lmforge.compress.lowrank`);
- ``distill``: a smaller student trained on the teacher's outputs
  (:mod:`lmforge.compress.distill`).

``--resume`` continues an interrupted fine-tuning from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError, LmforgeError
from ..io import atomic_write_json, ensure_writable_dir, read_json
from .parent import Parent, describe, load_parent

METHODS = ("prune", "prune-structured", "int8", "int8-dynamic", "int4", "lowrank", "distill")
FINETUNE_DIR = "finetune"


@dataclass
class CompressOptions:
    """Every option of ``lmforge compress`` (each method reads its own)."""

    method: str
    sparsity: float = 0.5            # prune: share of weights set to zero
    scope: str = "layer"             # prune: layer | global
    schedule: str = "oneshot"        # prune: oneshot | gradual (Zhu & Gupta)
    heads: float = 0.3               # prune-structured: share of heads removed
    ffn: float = 0.3                 # prune-structured: share of FFN neurons removed
    ffn_multiple: int = 64           # prune-structured: kept FFN width rounded to this
    group_size: int = 128            # int4: weights per (scale, zero) group
    embeddings: str = "fp32"         # int4: fp32 | int8 for the embedding tables
    rank: int | None = None          # lowrank: one rank for every layer
    ranks: str | None = None         # lowrank: PATTERN=RANK,... per layer
    energy: float | None = None      # lowrank: keep this share of sum(sigma^2) per layer
    student: str = "half"            # distill: half | bilstm (a classifier's student)
    temperature: float | None = None  # distill: T (None: 1 for a language model, 2 else)
    alpha: float | None = None       # distill: soft-loss weight (None: 0.9 LM, 0.5 else)
    hidden_weight: float = 0.0       # distill: weight of the hidden-state cosine loss
    steps: int | None = None         # fine-tuning / distillation steps (None: the default)
    lr: float | None = None          # their peak learning rate (None: the parent's)
    sensitivity: bool = False        # int8/int4: per-layer sensitivity report
    score_batches: int = 8           # batches that score importance / sensitivity

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got "
                              f"{self.method!r}")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"--steps must be >= 0, got {self.steps}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.score_batches < 1:
            raise ConfigError(f"--score-batches must be >= 1, got {self.score_batches}")

    def parameters(self) -> dict[str, Any]:
        """The options this method uses (recorded in ``lmforge.json``)."""
        used = {"prune": ("sparsity", "scope", "schedule", "steps", "lr"),
                "prune-structured": ("heads", "ffn", "ffn_multiple", "score_batches", "steps",
                                     "lr"),
                "int8": (), "int8-dynamic": (),
                "int4": ("group_size", "embeddings"),
                "lowrank": ("rank", "ranks", "energy", "steps", "lr"),
                "distill": ("student", "temperature", "alpha", "hidden_weight", "steps",
                            "lr")}[self.method]
        return {k: v for k, v in asdict(self).items() if k in used}


@dataclass
class Job:
    """What a method needs: the parent, the options, the output folder and how to run."""

    parent: Parent
    options: CompressOptions
    out: Path
    resume: bool
    show_progress: bool
    log: Callable[[str], None]

    @property
    def run_dir(self) -> Path:
        return self.out / FINETUNE_DIR

    def steps(self, default: int) -> int:
        return default if self.options.steps is None else self.options.steps

    def finetune(self, model: nn.Module, steps: int, **kwargs: Any) -> nn.Module:
        """Fine-tune ``model`` on the parent's data for ``steps`` (none when 0); on
        ``--resume``, from the run's last checkpoint (which replaces ``model``).
        ``kwargs``: :meth:`Parent.finetune`'s (``lr`` defaults to ``--lr``)."""
        if steps == 0:
            return model
        if self.resume:
            model = resumed_model(self.run_dir, model)
        self.log(f"fine-tuning {steps} steps in {self.run_dir}")
        kwargs.setdefault("lr", self.options.lr)
        self.parent.finetune(model, self.run_dir, steps, resume=self.resume,
                             show_progress=self.show_progress, **kwargs)
        return model.eval()


def resumed_model(run_dir: Path, model: nn.Module) -> nn.Module:
    """The model of the last checkpoint in ``run_dir`` (same modules as ``model``)."""
    from ..models.base import load_model_folder
    from ..train.checkpoint import latest_checkpoint

    last = latest_checkpoint(run_dir)
    if last is None:
        raise LmforgeError(f"--resume: {run_dir} has no checkpoint to resume from")
    return load_model_folder(last).train(model.training)


def size_on_disk(folder: Path) -> int:
    """Bytes of the folder's weights file."""
    from ..models.base import WEIGHTS

    return (folder / WEIGHTS).stat().st_size


def _check_out(out: Path, resume: bool) -> None:
    if (out / "lmforge.json").is_file() and "compression" in read_json(out / "lmforge.json"):
        raise LmforgeError(f"{out} already holds a compressed model; choose another --out")
    if not resume and (out / FINETUNE_DIR / "checkpoints").is_dir():
        raise LmforgeError(f"{out} holds an interrupted compression; pass --resume to "
                           "continue it or choose another --out")


def compress(source: str | Path, options: CompressOptions, out: str | Path, *,
             resume: bool = False, show_progress: bool = True,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress the model of run or folder ``source`` into the model folder ``out``;
    returns the report (also written as ``out/report.json``)."""
    from .methods import METHOD_FUNCTIONS, check_options

    check_options(options)
    out = Path(out)
    _check_out(out, resume)
    parent = load_parent(source)
    ensure_writable_dir(out)
    started = time.perf_counter()
    log(f"parent: {parent.folder} ({parent.arch}, {parent.kind})")
    before = parent.quality(parent.model)
    log(f"parent quality: {describe(before)}")
    job = Job(parent, options, out, resume, show_progress, log)
    model, details = METHOD_FUNCTIONS[options.method](job)
    after = parent.quality(model)
    log(f"compressed quality: {describe(after)}")
    provenance = {"compression": {"method": options.method, "parameters": options.parameters(),
                                  "parent": str(parent.source),
                                  "parent_sha256": parent.checksum()},
                  "recipe": parent.recipe.to_dict()}
    model.save_pretrained(out, provenance=provenance)
    parent.tokenizer.save(out)
    report = {"method": options.method, "parameters": options.parameters(),
              "parent": {"path": str(parent.source),
                         "parameters": count_parameters(parent.model),
                         "bytes": size_on_disk(parent.folder), "quality": before},
              "compressed": {"parameters": count_parameters(model),
                             "bytes": size_on_disk(out), "quality": after},
              "seconds": round(time.perf_counter() - started, 1), **details}
    atomic_write_json(out / "report.json", report)
    p, c = report["parent"], report["compressed"]
    log(f"{options.method}: {c['parameters']:,} parameters (parent {p['parameters']:,}), "
        f"{c['bytes'] / 1e6:.2f} MB on disk (parent {p['bytes'] / 1e6:.2f} MB, "
        f"{p['bytes'] / c['bytes']:.2f}x smaller); written to {out}")
    return report


def count_parameters(model: nn.Module) -> int:
    """The model's weights, each tensor once: its parameters, and for a quantised layer
    (int8, int4, an int8 table) the weights it stands for, whatever their storage."""
    seen: set[int] = set()
    n = 0

    def visit(module: nn.Module) -> None:
        nonlocal n
        kind = getattr(module, "kind", None)
        if kind in ("int8", "int4"):
            n += module.in_features * module.out_features + \
                (module.out_features if module.bias is not None else 0)
            return
        if kind == "int8-embedding":
            n += module.num_embeddings * module.embedding_dim
            return
        for p in module.parameters(recurse=False):
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                n += p.numel()
        for child in module.children():
            visit(child)

    visit(model)
    return n
