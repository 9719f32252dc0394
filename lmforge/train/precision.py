"""Device and numeric precision.

``precision="auto"`` trains under bf16 autocast where bf16 matmuls are measurably faster
than fp32: on CUDA GPUs with bf16, and on CPUs whose bf16 matmul measures at least
:data:`lmforge.hardware.BF16_FASTER` times the fp32 rate (:func:`lmforge.hardware.bf16_speed`,
measured once per process). It trains in plain fp32 elsewhere. The flags alone do not
decide it: measured on 2-core machines, a 1024² bf16 matmul ran at half the fp32 rate
on a Xeon with AVX512-BF16 but no AMX, 2.3x the fp32 rate on an AMD EPYC with
AVX512-BF16, ~6x with AMX, and over 100x slower where bf16 is emulated (AVX2 only, or oneDNN
capped with ``ONEDNN_MAX_CPU_ISA``).
Under autocast only the matmul-heavy operations (linear layers, attention) run in bf16;
the parameters, their gradients and the AdamW moments stay fp32 ("master weights"), and
objectives cast logits to fp32 before the softmax/cross-entropy.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import ConfigError


def cpu_has_fast_bf16() -> bool:
    """True when this CPU's bf16 matmul is measurably faster than fp32 (see module doc)."""
    from ..hardware import bf16_speed

    return bf16_speed().faster


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


def precision_from_name(name: str) -> torch.dtype | None:
    """The inverse of :func:`precision_name` (``"fp32"`` -> None); ValueError if unknown."""
    for dtype in (None, torch.bfloat16, torch.float16):
        if precision_name(dtype) == name:
            return dtype
    raise ValueError(f"unknown precision {name!r}")


def describe_auto_precision(measure: bool = True) -> str:
    """What ``precision: auto`` picks here, and why (for ``lmforge info``)."""
    if torch.cuda.is_available():
        return ("bf16 autocast on cuda" if torch.cuda.is_bf16_supported()
                else "fp32 on cuda (no bf16)")
    if not measure:
        return "measured at the start of training (bf16 where its matmul is faster)"
    from ..hardware import BF16_FASTER, bf16_speed

    speed = bf16_speed()
    if speed.faster:
        return f"bf16 autocast (bf16 matmul {speed.ratio:.2f}x fp32)"
    why = "emulated" if speed.emulated else f"{speed.ratio:.2f}x fp32, under {BF16_FASTER}x"
    return f"fp32 (bf16 matmul {why})"
