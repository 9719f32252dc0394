r"""Export a model to ONNX for ONNX Runtime, optionally with int8 weights:
``export_onnx("runs/x", "out/model.onnx", quantize="int8")``.

What is exported is the graph view of :mod:`lmforge.compress.onnx_graphs`: encoders,
task models, and decoders with their past keys and values as inputs and outputs, every
batch and length axis dynamic. Beside ``model.onnx`` go

- ``model.onnx.json``, the sidecar: the architecture, the source model's config, each
  input and output with its dtype and named axes (read back from the written file), the
  opset, the exporter and the quantization, so a decode loop can be built from the file
  alone (:mod:`lmforge.compress.onnx_decode`);
- ``tokenizer.json`` (and ``tokenizer_config.json``), when the model has a tokenizer, as
  in a model folder;
- with ``quantize="int8"``, ``model.int8.onnx`` and its sidecar.

**Exporter.** ``torch.onnx.export(..., dynamo=True)``: ``torch.export`` captures the
graph with symbolic sizes, each axis declared with a ``torch.export.Dim`` (bounded by the
model's longest sequence, which the models check), so code that would fix a size fails
the export instead of silently fixing a length. The older TorchScript exporter
(``dynamo=False``) has no translation of ``aten::rms_norm`` (Llama style) at any opset it
supports, and silently records the branch its example input took wherever a model
branches on values. A graph cannot branch on values, so BERT keeps its padding mask
under export even when nothing is padded (``torch.compiler.is_exporting()``): the same
numbers as the eager fast path.

**Checked at other sizes.** The written graph is run once by ONNX Runtime on inputs of
other sizes than the traced ones (batch 3, length 4, past 2) and compared with the eager
model; a graph that fails or differs (a size fixed where the exporter did not notice, as
torch 2.13 does with the fused LSTM of a BiLSTM encoder) is removed and refused.

**Errors** are :class:`ConfigError` with one line: an op that torch.onnx cannot translate
is named (``aten.cummax``), as is an unsupported architecture and a branch on values;
the output folder must exist; a missing ``onnx``/``onnxscript``/``onnxruntime`` says
``pip install 'lmforge[compress]'``.

**int8** is ONNX Runtime's own dynamic quantization (``quantize_dynamic``). Each MatMul's
weights are stored as uint8 with a scale and zero point per output column,
``W_kn ~ s_n (Q_kn - z_n)``; each call quantises its activations to uint8 with a scale and
zero point from that call's range (``DynamicQuantizeLinear``), multiplies in integers
with int32 accumulation (``MatMulInteger``) and rescales to fp32. Embedding tables are
stored as uint8 too and dequantised after the lookup. Unsigned weights (u8 x u8) rather
than the default signed ones (u8 x s8): without AVX-512 VNNI, ONNX Runtime's u8 x s8
kernels add pairs of products in saturating int16 (``vpmaddubsw``: 2 x 255 x 127 >
32767), the problem :mod:`lmforge.compress.quantize` describes, while its u8 x u8 kernels
zero-extend both operands to int16 and add pairs in int32 (``vpmaddwd``), right on every
x86-64 CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_json, read_json
from .onnx_graphs import GraphSpec, Sizes, graph_spec

INSTALL_HINT = "pip install 'lmforge[compress]'"
MIN_OPSET = 18  # the opset torch.onnx's translations are written for
QUANTIZE_CHOICES = ("int8",)
SIDECAR_FORMAT = "lmforge-onnx/1"
_SINGLE_FILE_BYTES = 2**31 - 2**27  # protobuf's 2 GiB limit, with room for the graph
CHECK_SIZES = Sizes(batch=3, seq=4, past=2, words=2)  # unlike the traced ones


@dataclass
class OnnxExport:
    """The files one export wrote (``quantized``: the int8 model, when asked)."""

    model: Path
    sidecar: Path
    tokenizer: Path | None = None
    quantized: Path | None = None


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or :class:`ConfigError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs {module}, which is not installed: "
                          f"{INSTALL_HINT}") from None


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads
    (default ``torch.get_num_threads()``, so ``OMP_NUM_THREADS`` and
    ``torch.set_num_threads`` govern both backends)."""
    ort = require("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # its errors come back as exceptions, not log lines
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise CheckpointError(f"{path} is not a model ONNX Runtime can load: "
                              f"{_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The sidecar of an exported ``.onnx`` file (:class:`CheckpointError` if absent)."""
    p = Path(onnx_path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist")
    side = sidecar_path(p)
    if not side.is_file():
        raise CheckpointError(f"{p} has no {side.name} beside it; write both with "
                              "`lmforge export onnx`")
    meta = read_json(side)
    if meta.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{side} is not an lmforge ONNX sidecar (format "
                              f"{meta.get('format')!r}, expected {SIDECAR_FORMAT!r})")
    return meta


def check_export_options(out: str | Path, opset: int | None = None,
                         quantize: str | None = None) -> Path:
    """Validate the options before any model is loaded; the output path as a Path."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "ONNX export")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"out must be a .onnx file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"out: the folder {out.parent} does not exist; create it first")
    if opset is not None:
        import onnx

        top = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= opset <= top:
            raise ConfigError(f"opset must be in [{MIN_OPSET}, {top}], got {opset}")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, "
                          f"got {quantize!r}")
    return out


def export_onnx(source: str | Path, out: str | Path, *, opset: int | None = None,
                quantize: str | None = None) -> OnnxExport:
    """Export what :func:`lmforge.hub.load_pretrained` loads from ``source`` (a model or
    run folder, a Hugging Face folder) to ``out`` (a ``.onnx`` path in an existing
    folder), with its sidecar and tokenizer; ``quantize="int8"`` adds the int8 model."""
    from ..hub import load_pretrained

    check_export_options(out, opset, quantize)
    model, tokenizer = load_pretrained(source)
    return export_model(model, out, tokenizer=tokenizer, opset=opset, quantize=quantize,
                        source=str(source))


def export_model(model: nn.Module, out: str | Path, *, tokenizer: Any = None,
                 opset: int | None = None, quantize: str | None = None,
                 source: str | None = None) -> OnnxExport:
    """Export ``model`` (in eval mode) to ``out``; see :func:`export_onnx`."""
    out = check_export_options(out, opset, quantize)
    spec = graph_spec(model)
    was_training = model.training
    model.eval()
    try:
        _run_exporter(spec, out, opset, _weight_bytes(model) > _SINGLE_FILE_BYTES)
        _check_other_sizes(model, out)
    finally:
        model.train(was_training)
    tok_path = None
    if tokenizer is not None:
        tokenizer.save(out.parent)
        tok_path = out.parent / "tokenizer.json"
    meta = {"format": SIDECAR_FORMAT, "arch": spec.arch,
            "config": dataclasses.asdict(model.config), **_signature(out),
            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "tokenizer": tok_path.name if tok_path else None, "quantization": None,
            "source": source}
    atomic_write_json(sidecar_path(out), meta)
    result = OnnxExport(out, sidecar_path(out), tok_path)
    if quantize == "int8":
        result.quantized = quantize_onnx(out, out.with_name(out.stem + ".int8.onnx"))
    return result


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of ``src`` (an exported model) into
    ``dst``, with a sidecar that says so (see the module docstring)."""
    require("onnxruntime", "int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    meta = read_sidecar(src)
    with _quiet(""):  # onnxruntime.quantization logs on the root logger
        quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, per_channel=True,
                         use_external_data_format=_external_data(src).exists())
    meta.update(_signature(dst), quantization="int8: onnxruntime quantize_dynamic, uint8 "
                "weights per output column, uint8 activations per call")
    atomic_write_json(sidecar_path(dst), meta)
    return dst


def _check_other_sizes(model: nn.Module, out: Path) -> None:
    """Run the written graph on inputs of other sizes than the traced ones and compare
    it with the eager model: a size the exporter fixed without saying so (a Python loop
    over positions, a kernel that reads a size as a number) fails here, not later. The
    file is removed when it fails."""
    spec = graph_spec(model, CHECK_SIZES)
    sizes = f"batch {CHECK_SIZES.batch}, length {CHECK_SIZES.seq}"
    with torch.no_grad():
        want = [t.numpy() for t in spec.module(*spec.example)]
    feeds = {n: t.numpy() for n, t in zip(spec.input_names, spec.example, strict=True)}
    try:
        got = onnx_session(out).run(spec.output_names, feeds)
    except Exception as e:  # onnxruntime's own exception types
        _remove(out)
        raise ConfigError(f"cannot export to ONNX: the graph fails on inputs of other sizes "
                          f"than the traced ones ({sizes}), so the model fixes a size in its "
                          f"code: {_first_line(e)}") from None
    for name, g, w in zip(spec.output_names, got, want, strict=True):
        error = float(np.abs(g - w).max()) if g.shape == w.shape else float("inf")
        if not error <= 1e-3 * max(1.0, float(np.abs(w).max())):
            _remove(out)
            raise ConfigError(f"cannot export to ONNX: output {name} differs from the "
                              f"eager model by {error:.3g} on inputs of other sizes than the "
                              f"traced ones ({sizes}), so the model fixes a size in its code")


def _remove(onnx_path: Path) -> None:
    """Delete a refused export (and its external weights, if any)."""
    onnx_path.unlink(missing_ok=True)
    _external_data(onnx_path).unlink(missing_ok=True)


def _external_data(onnx_path: Path) -> Path:
    """Where torch.onnx puts the weights of a model over 2 GiB: ``model.onnx.data``."""
    return onnx_path.with_name(onnx_path.name + ".data")


def _weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _run_exporter(spec: GraphSpec, out: Path, opset: int | None, external: bool) -> None:
    """``torch.onnx.export`` of ``spec`` into ``out``, its errors made one-line
    :class:`ConfigError`; a single file is written under a temporary name and renamed."""
    target = out if external else out.with_name(f".{out.name}.staging")
    try:
        with _quiet("torch.onnx"), torch.no_grad():
            torch.onnx.export(spec.module, spec.example, str(target),
                              input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_shapes=spec.dynamic_shapes, opset_version=opset,
                              dynamo=True, external_data=external, verbose=False)
    except torch.onnx.OnnxExporterError as e:
        target.unlink(missing_ok=True)
        raise ConfigError(f"cannot export to ONNX: {_reason(e)}") from None
    if target != out:
        os.replace(target, out)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a tool's logs, warnings and prints (torch.export prints the graph it
    failed on to stderr): the CLI prints one line per error."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _reason(error: BaseException) -> str:
    """One line on why torch.onnx failed, naming the op when one could not be translated."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(str(e) for e in chain)
    op = re.search(r"OpOverload\(op='([\w.:]+)'", text) or \
        re.search(r"target=torch\.ops\.(\w+\.\w+)", text)
    if op:
        return (f"torch.onnx has no translation of the op {op.group(1)}; replace it in the "
                "model (or try another --opset)")
    # torch.export's failures carry a summary: "<class 'module.Name'>: message"
    summary = re.search(r"<class '(?:[\w.]+\.)?(\w+)'>: ([^\n]+)", str(error))
    first = f"{summary.group(1)}: {summary.group(2)}" if summary else \
        f"{type(error).__name__}: {_first_line(error)}"
    where = re.search(r'raised this error:\s+File "([^"]+)", line (\d+)', text)
    at = f" at {Path(where.group(1)).name}:{where.group(2)}" if where else ""
    if "data-dependent" in first:
        return f"the model branches on a tensor's values{at}, which a graph cannot ({first})"
    return first + (f" ({at.strip()})" if at else "")


def _signature(onnx_path: Path) -> dict[str, Any]:
    """Inputs and outputs (name, dtype, axes: a name where dynamic) and the opset, as
    written in the file."""
    onnx = require("onnx", "ONNX export")
    proto = onnx.load(str(onnx_path), load_external_data=False)

    def describe(value) -> dict[str, Any]:
        t = value.type.tensor_type
        return {"name": value.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"inputs": [describe(v) for v in proto.graph.input],
            "outputs": [describe(v) for v in proto.graph.output], "opset": opset}
