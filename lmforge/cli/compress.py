"""``lmforge compress``: thin; parses the options and calls :mod:`lmforge.compress.command`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _echo, app


@app.command(epilog="Examples: lmforge compress runs/quickstart --method int4 --out "
                    "runs/quickstart-int4 | lmforge compress runs/quickstart --method "
                    "prune-structured --heads 0.3 --ffn 0.3 --steps 300 --out runs/qs-pruned")
def compress(
    run: Annotated[str, typer.Argument(help="A run folder (its best checkpoint), a "
                                       "checkpoint or a compressed folder.",
                                       metavar="RUN")],
    method: Annotated[str, typer.Option(help="prune, prune-structured, int8, int8-dynamic, "
                                        "int4, lowrank or distill.")],
    out: Annotated[Path, typer.Option(help="The model folder to write.")],
    sparsity: Annotated[float, typer.Option(help="prune: share of weights set to zero, in "
                                            "[0, 1).")] = 0.5,
    scope: Annotated[str, typer.Option(help="prune: layer (each layer to the sparsity) or "
                                       "global (one threshold).")] = "layer",
    schedule: Annotated[str, typer.Option(help="prune: oneshot (prune, then fine-tune) or "
                                          "gradual (Zhu & Gupta's cubic schedule while "
                                          "fine-tuning).")] = "oneshot",
    heads: Annotated[float, typer.Option(help="prune-structured: share of attention heads "
                                         "removed.")] = 0.3,
    ffn: Annotated[float, typer.Option(help="prune-structured: share of FFN neurons "
                                       "removed.")] = 0.3,
    ffn_multiple: Annotated[int, typer.Option(help="prune-structured: round the kept FFN "
                                              "width to a multiple of this (matrix "
                                              "kernels run odd widths slower); 1: "
                                              "exact.")] = 64,
    score_batches: Annotated[int, typer.Option(help="prune-structured: training batches "
                                               "that score the heads and neurons.")] = 8,
    group_size: Annotated[int, typer.Option(help="int4: weights per scale and zero point "
                                            "(32, 64 or 128).")] = 128,
    embeddings: Annotated[str, typer.Option(help="int4: the embedding tables in fp32 or "
                                            "int8 (per row).")] = "fp32",
    rank: Annotated[int | None, typer.Option(help="lowrank: the rank of every layer.")] = None,
    ranks: Annotated[str | None, typer.Option(help="lowrank: a rank per layer-name pattern, "
                                              "e.g. 'qkv=16,mlp.*=24'.")] = None,
    energy: Annotated[float | None, typer.Option(
        help="lowrank: per layer, the smallest rank keeping this share of the squared "
             "singular values, in (0, 1] (the default, 0.9, when no rank is given).")] = None,
    student: Annotated[str, typer.Option(help="distill: half (half the depth and width) or, "
                                         "for a classifier, bilstm.")] = "half",
    temperature: Annotated[float | None, typer.Option(
        help="distill: softmax temperature T [default: 1 for a language model, 2 for a "
             "classifier].")] = None,
    alpha: Annotated[float | None, typer.Option(
        help="distill: weight of the teacher's soft loss, 1 - alpha the labels' "
             "[default: 0.9 for a language model, 0.5 for a classifier].")] = None,
    hidden_weight: Annotated[float, typer.Option(help="distill: weight of the hidden-state "
                                                 "cosine loss.")] = 0.0,
    steps: Annotated[int | None, typer.Option(help="Fine-tuning (or distillation) steps; 0: "
                                              "none. Default: the method's.")] = None,
    lr: Annotated[float | None, typer.Option(help="Their peak learning rate (default: the "
                                             "parent recipe's).")] = None,
    sensitivity: Annotated[bool, typer.Option(help="int8/int4: also report each layer's "
                                              "quality change when only it is "
                                              "quantised.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted fine-tuning.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Compress a trained model (pruning, quantization, low rank, distillation) into a
    model folder that generate, evaluate, predict and serve load unchanged; reports the
    parameters, size on disk and quality before and after."""
    from ..compression.command import CompressOptions
    from ..compression.command import compress as run_compress

    options = CompressOptions(method=method, sparsity=sparsity, scope=scope,
                              schedule=schedule, heads=heads, ffn=ffn, group_size=group_size,
                              embeddings=embeddings, rank=rank, ranks=ranks,
                              energy=energy,
                              student=student, temperature=temperature, alpha=alpha,
                              hidden_weight=hidden_weight, steps=steps, lr=lr,
                              sensitivity=sensitivity, score_batches=score_batches,
                              ffn_multiple=ffn_multiple)
    run_compress(run, options, out, resume=resume, show_progress=progress, log=_echo)
