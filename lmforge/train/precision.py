"""Device and numeric precision.

``precision="auto"`` trains under bf16 autocast where the hardware has fast bf16 matrix
units (CUDA GPUs with bf16, CPUs with AMX tiles) and in plain fp32 elsewhere. AVX512-BF16
alone is not enough: its ``vdpbf16ps`` does the FLOPs of two fp32 FMAs per cycle, and
measured on such a CPU a 2048² bf16 matmul ran at half the fp32 rate (166 vs 331
GFLOP/s), while AMX makes it ~6x faster.
Under autocast only the matmul-heavy operations (linear layers, attention) run in bf16;
the parameters, their gradients and the AdamW moments stay fp32 ("master weights"), and
objectives cast logits to fp32 before the softmax/cross-entropy.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..errors import ConfigError


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX-BF16 tiles (where bf16 matmuls beat fp32 several-fold)."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old builds
        cap = ""
    if "AMX" in str(cap).upper():
        return True
    return "amx_bf16" in _cpu_flags()


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu. ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA GPU is available; "
                          "allowed: auto, cpu, cuda")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if bf16_supported(device) else None
    raise ConfigError(f"train.precision: {precision!r} is not allowed; allowed: auto, bf16, fp32")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context manager: autocast to ``dtype`` on ``device``, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
