r"""Weight-only int4 linear layers (W4A16), and ``quantize_int4(model)``.

Each row ``n`` of a weight ``W (N, K)`` is cut into groups of ``g`` consecutive inputs
(``g`` in 32, 64, 128, 256, so ``K`` must be a multiple of ``g``). Each group gets 16
levels, asymmetric: a scale ``s`` and the value ``z`` of the middle level ``q = 8`` (the
convention of PyTorch's CPU kernel), both stored in bf16, which the kernel reads::

    z = bf16(min_g + 8 (max_g - min_g) / 15)
    s = bf16 rounded up of max((max_g - z) / 7, (z - min_g) / 8)       (>= (max_g - min_g) / 15)
    q = clamp(round((w - z) / s) + 8, 0, 15),      w^ = (q - 8) s + z

Rounding ``s`` up makes the levels ``z - 8s .. z + 7s`` cover ``[min_g, max_g]`` whatever
bf16 did to ``z``, so every weight is within half a step: ``|w - w^| <= s / 2``.
(``s`` is ``(max_g - min_g) / 15`` up to bf16 rounding; it is larger only for a group
whose values sit far from zero compared with their spread, where bf16 moves ``z`` by
more than a step.) Storage: ``K / 2`` bytes per row (two levels per byte) plus 4 bytes
per group: ``4 + 32 / g`` bits per weight (4.25 at ``g = 128``).

The product ``y = x W^T + b``:

- up to ``small_batch`` rows (decoding, bandwidth-bound) one call of
  ``aten._weight_int4pack_mm_for_cpu`` with bf16 activations, which reads the packed
  levels and computes ``sum_k x_k ((q_k - 8) s + z)`` in fp32 (AVX-512 and AVX2 kernels;
  with fp32 activations it only has a scalar loop, 30x slower). Its error beyond the
  weights' is bf16's, ``|y_n - sum_k x_k w^_nk| <= 2^-8 sum_k |x_k w^_nk| + 2^-9 |y_n|``
  (activations and output rounded to bf16).
- more rows (a prompt's prefill, compute-bound) dequantise ``W^`` to fp32 for one
  ``F.linear``: exact up to fp32.

The kernel wants its own layout of the levels, which differs between CPU capabilities
(AVX-512 interleaves 64 outputs, AVX2 32), and ``N`` a multiple of 16. So the layer
stores the portable form (``qweight (N, K/2)``: input ``2j`` in the low nibble, ``2j+1``
in the high one; ``scales``, ``zeros (N, K/g)``), and :meth:`Int4Linear.after_load`
packs it for this machine's kernel, padding ``N`` with zero rows (so the levels are held
twice in memory, once on disk). A saved folder loads on any CPU without re-quantising
(:mod:`lmforge.compress.structure`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .select import named_layers

GROUP_SIZES: tuple[int, ...] = (32, 64, 128, 256)
SMALL_BATCH = 64  # rows up to which the kernel beats dequantise + F.linear (AVX2 and AVX-512)
_KERNEL_ROWS = 16  # the kernel needs N to be a multiple of this


def check_group_size(group_size: int) -> None:
    if group_size not in GROUP_SIZES:
        raise ConfigError(f"int4 group_size must be one of "
                          f"{', '.join(map(str, GROUP_SIZES))}, got {group_size!r}")


def pack_nibbles(q: Tensor) -> Tensor:
    """Levels ``(N, K)`` in [0, 15] -> ``(N, K/2)`` uint8, input ``2j`` in the low nibble."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(packed: Tensor) -> Tensor:
    """The inverse of :func:`pack_nibbles`: ``(N, K/2)`` uint8 -> ``(N, K)`` uint8."""
    return torch.stack((packed & 15, packed >> 4), dim=-1).reshape(packed.shape[0], -1)


def _round_up_bf16(t: Tensor) -> Tensor:
    """The smallest bf16 value >= each element of the fp32 tensor ``t``."""
    b = t.to(torch.bfloat16)
    return torch.where(b.float() < t, torch.nextafter(b, torch.full_like(b, float("inf"))), b)


def quantize_int4_weight(weight: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(qweight uint8 (N, K/2), scales bf16 (N, K/g), zeros bf16 (N, K/g))`` of ``W``
    (see the module doc)."""
    check_group_size(group_size)
    w = weight.detach().float()
    n, k = w.shape
    if k % group_size:
        raise ConfigError(f"int4: in_features={k} is not a multiple of group_size="
                          f"{group_size}")
    wg = w.reshape(n, k // group_size, group_size)
    lo, hi = wg.amin(-1), wg.amax(-1)
    zeros = (lo + (hi - lo) * (8 / 15)).to(torch.bfloat16)
    z = zeros.float()
    step = torch.maximum((hi - z) / 7, (z - lo) / 8).clamp_min(torch.finfo(torch.bfloat16).tiny)
    scales = _round_up_bf16(step)
    q = (torch.round((wg - z[..., None]) / scales.float()[..., None]) + 8).clamp_(0, 15)
    return pack_nibbles(q.reshape(n, k)), scales, zeros


def dequantize_int4_weight(qweight: Tensor, scales: Tensor, zeros: Tensor) -> Tensor:
    """``W^ = (q - 8) s + z`` in fp32, ``(N, K)`` (computed as ``q s + (z - 8 s)``)."""
    q = unpack_nibbles(qweight)
    n, k = q.shape
    s = scales.float()
    levels = q.view(n, s.shape[1], -1).float()
    return torch.addcmul((zeros.float() - 8 * s)[..., None], levels, s[..., None]).view(n, k)


class Int4Linear(nn.Module):
    """A frozen ``nn.Linear`` with int4 weights: ``forward(x (..., K)) -> (..., N)``.

    ``Int4Linear(K, N, group_size, bias)`` is empty (zero weights: fill its buffers, then
    call :meth:`after_load`); :meth:`from_linear` quantises a layer."""

    kind = "int4"

    def __init__(self, in_features: int, out_features: int, group_size: int = 128,
                 bias: bool = True, small_batch: int = SMALL_BATCH):
        super().__init__()
        if group_size not in GROUP_SIZES or in_features % group_size:
            raise ValueError(f"int4 needs a group_size in {GROUP_SIZES} that divides "
                             f"in_features, got {group_size} and {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.small_batch = group_size, small_batch
        groups = in_features // group_size
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2,
                                                    dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, groups, dtype=torch.bfloat16))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        # the kernel's forms, made by after_load (not saved: they depend on the CPU)
        self.register_buffer("packed", None, persistent=False)
        self.register_buffer("scales_and_zeros", None, persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128,
                    small_batch: int = SMALL_BATCH) -> Int4Linear:
        layer = cls(linear.in_features, linear.out_features, group_size,
                    linear.bias is not None, small_batch)
        q, s, z = quantize_int4_weight(linear.weight, group_size)
        layer.qweight.copy_(q)
        layer.scales.copy_(s)
        layer.zeros.copy_(z)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        layer.after_load()
        return layer

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "group_size": self.group_size, "bias": self.bias is not None,
                "small_batch": self.small_batch}

    @classmethod
    def from_spec(cls, spec: dict) -> Int4Linear:
        return cls(**spec)

    def after_load(self) -> None:
        """Pack the stored levels, scales and zeros for this CPU's kernel."""
        n = self.out_features
        pad = -n % _KERNEL_ROWS
        levels = F.pad(unpack_nibbles(self.qweight).to(torch.int32), (0, 0, 0, pad), value=8)
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1)
        sz = torch.stack((self.scales, self.zeros), dim=-1)  # (N, G, 2)
        sz = F.pad(sz, (0, 0, 0, 0, 0, pad))  # padded rows: s = z = 0, so w^ = 0
        self.scales_and_zeros = sz.transpose(0, 1).contiguous().to(torch.bfloat16)

    def dequantized_weight(self) -> Tensor:
        """``W^`` (N, K) in fp32."""
        return dequantize_int4_weight(self.qweight, self.scales, self.zeros)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] <= self.small_batch:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.to(torch.bfloat16).contiguous(), self.packed, self.group_size,
                self.scales_and_zeros.to(torch.bfloat16))[:, :self.out_features].float()
            if self.bias is not None:
                y = y + self.bias
        else:
            y = F.linear(x2.float(), self.dequantized_weight(),
                         None if self.bias is None else self.bias.float())
        return y.to(x.dtype).reshape(*shape, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, bias={self.bias is not None}")


def quantize_int4(model: nn.Module, group_size: int = 128,
                  include: Sequence[str] | None = None, skip: Sequence[str] = (),
                  small_batch: int = SMALL_BATCH) -> nn.Module:
    """Replace the ``nn.Linear`` layers of ``model`` by :class:`Int4Linear` (in place; the
    model is returned in eval mode). CPU only.

    ``include`` / ``skip``: name patterns (:mod:`lmforge.compress.select`) of the layers
    to quantise (all when None) and to leave in fp32. A tied output head gets its own
    int4 copy; embedding tables stay as they are (see
    :func:`lmforge.compress.quantize.quantize_embeddings_int8`). Raises
    :class:`ConfigError` for a group size not in :data:`GROUP_SIZES` or a layer whose
    ``in_features`` is not a multiple of it, before changing anything."""
    check_group_size(group_size)
    if any(t.device.type != "cpu" for t in model.state_dict().values()):
        raise ConfigError("int4: the int4 kernel runs on the CPU; move the model to the "
                          "CPU first")
    layers = named_layers(model, nn.Linear, include, skip)
    for name, lin in layers:
        if lin.in_features % group_size:
            fits = [str(g) for g in GROUP_SIZES if lin.in_features % g == 0]
            hint = (f"use group_size {' or '.join(fits)}" if fits else
                    f"no group size ({', '.join(map(str, GROUP_SIZES))}) divides it")
            raise ConfigError(f"int4: layer {name!r} has in_features={lin.in_features}, "
                              f"not a multiple of group_size={group_size}; {hint}, or skip "
                              f"the layer (skip=[{name!r}])")
    with torch.no_grad():
        for name, lin in layers:
            model.set_submodule(name, Int4Linear.from_linear(lin, group_size, small_batch))
    return model.eval()
