"""CLI verb group ``lmforge export``: models to other runtimes (ONNX,
:mod:`lmforge.compress.onnx_export`); and the ONNX Runtime backend of ``lmforge
generate``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from . import _echo, app

export_app = typer.Typer(help="Export models to other runtimes.", no_args_is_help=True)
app.add_typer(export_app, name="export")


class OnnxQuantize(str, enum.Enum):
    """``lmforge export onnx --quantize`` choices."""

    int8 = "int8"


@export_app.command("onnx", epilog="Example: lmforge export onnx runs/quickstart "
                                   "--out onnx/model.onnx --quantize int8")
def export_onnx(
    model: Annotated[str, typer.Argument(help="A run folder, a model folder or a Hugging "
                                         "Face folder.", metavar="RUN_OR_DIR")],
    out: Annotated[Path, typer.Option(help="The .onnx file to write, in an existing folder; "
                                      "its sidecar (.onnx.json) and the tokenizer go "
                                      "beside it.")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: torch.onnx's, "
                                              "20).")] = None,
    quantize: Annotated[OnnxQuantize | None, typer.Option(
        help="Also write NAME.int8.onnx: ONNX Runtime's dynamic int8 quantization.")] = None,
):
    """Export a model to ONNX for ONNX Runtime: encoders and task models (their logits or
    emissions), and GPT decoders with past keys and values as inputs and outputs, so
    that ONNX Runtime decodes token by token (lmforge generate --backend onnxruntime).
    Batch and sequence axes are dynamic."""
    from ..compress.onnx_export import export_onnx as run_export

    result = run_export(model, out, opset=opset, quantize=quantize.value if quantize else None)
    for path in (result.model, result.quantized):
        if path is not None:
            _echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    _echo(f"wrote {result.sidecar}" + (f" and {result.tokenizer}" if result.tokenizer else ""))


def generation_model(model: str, backend: str, onnx: Path | None,
                     quantize: str | None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``lmforge generate``: eager (``backend`` torch) or an
    ONNX export run by ONNX Runtime."""
    from ..hub import load_pretrained

    if backend == "torch":
        if onnx is not None:
            raise ConfigError("--onnx needs --backend onnxruntime")
        return load_pretrained(model, quantize=quantize, require_tokenizer=True)
    if quantize is not None:
        raise ConfigError("--quantize applies to --backend torch; for ONNX Runtime run "
                          "`lmforge export onnx --quantize int8` and pass --onnx "
                          "NAME.int8.onnx")
    from ..compress.onnx_decode import load_onnx_decoder

    if onnx is None and model.endswith(".onnx"):  # the exported file itself
        return load_onnx_decoder(model)
    return load_onnx_decoder(onnx, model)
