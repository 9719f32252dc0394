r"""Int8 linear layers for fast CPU inference, and ``quantize_int8(model)``.

Decoding one token at a time reads every weight once per token, so it is bound by memory
bandwidth; int8 weights are a quarter of fp32's bytes. Two schemes, both with the same
weights:

**Weights** (both schemes): symmetric, one scale per output channel ``n``::

    s_n = max_k |W_nk| / 127,     Q_nk = round(W_nk / s_n) in [-127, 127]

so ``|W_nk - s_n Q_nk| <= s_n / 2``.

``mode="weight-only"`` (W8A16): activations stay in floating point,
``y = (x Q^T) * s + b``. Up to ``small_batch`` rows (decoding) it runs
``aten._weight_int8pack_mm`` with bf16 activations, which reads the int8 weights
directly. Longer inputs (a prompt's prefill, which is compute-bound) dequantise
``W' = s Q`` to fp32 for one ``F.linear``. The only error is the weight rounding above
(plus bf16 activations when decoding).

``mode="dynamic"`` (W8A8, dynamic): activations are quantised too, per call, to uint8
with a scale and zero point from that call's min and max, and the product runs as an int8
GEMM (fbgemm) with int32 accumulation, dequantised to fp32. Faster for long inputs as
well, but the activation rounding is coarser, and one outlier feature widens the step for
every value of the call. With step ``d = (max(x, 0) - min(x, 0)) / L``, each activation
is off by at most ``d`` (``d / 2`` of rounding plus up to ``d / 2`` from rounding the zero
point), so the error of an output is at most

    |y_n - (x W^T)_n| <= sum_k d |s_n Q_nk| + |x_k| s_n / 2

``L = 255`` on CPUs whose int8 GEMM accumulates in int32 (VNNI's ``vpdpbusd``). Without
VNNI, fbgemm's ``vpmaddubsw`` adds u8 x s8 pairs in a saturating int16, which 255 x 127 x
2 overflows: the layer then quantises activations to 7 bits (``L = 127``, "reduced
range", 127 x 127 x 2 < 32767), checked once per process by
:func:`lmforge.hardware.int8_dynamic_saturates`, and says so once on stderr. It relies on
PyTorch's quantized-tensor functions, which PyTorch has deprecated
(pytorch/pytorch#184982); they work in the pinned 2.13.

``quantize_int8`` replaces every ``nn.Linear`` of a model (a tied output head gets its
own int8 copy; the embedding table stays fp32). It is for inference: the new layers have
no gradients. ``model.save_pretrained`` records them, and ``load_pretrained`` rebuilds
them from the stored int8 weights without quantising again
(:mod:`lmforge.compress.structure`).

**Embedding tables** (``quantize_embeddings_int8``, for smaller files: a vocabulary of
a few thousand is a large share of a small model): the same per-row symmetric int8,
``E_v ≈ s_v Q_v`` with ``|E_vd - s_v Q_vd| <= s_v / 2``; a lookup dequantises only the
rows it reads.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hardware import int8_dynamic_saturates, int8_engine
from .select import named_layers

Mode = Literal["weight-only", "dynamic"]
MODES: tuple[str, ...] = ("weight-only", "dynamic")


def int8_weight_only_kernel() -> str:
    """What ``--quantize int8`` runs on this machine (for ``lmforge info``)."""
    return ("int8 weights x bf16 activations (aten._weight_int8pack_mm) up to 16 rows, "
            "dequantised fp32 matmul beyond")


def int8_dynamic_kernel() -> str:
    """What ``--quantize int8-dynamic`` runs on this machine (for ``lmforge info``)."""
    engine = int8_engine()
    if engine == "none":
        return "not available (this torch build has no quantized engine)"
    if int8_dynamic_saturates():
        return (f"{engine} engine, u8 x s8 without VNNI: activations in 7 bits (reduced "
                "range), since 8-bit products would saturate")
    return f"{engine} engine, u8 x s8 with int32 accumulation: activations in 8 bits"


@functools.lru_cache(maxsize=1)
def _reduce_range() -> bool:
    """Whether dynamic int8 must use 7-bit activations here; says so once on stderr."""
    if not int8_dynamic_saturates():
        return False
    print("lmforge: int8-dynamic: this CPU's int8 kernels have no VNNI (or it is capped by "
          "FBGEMM_ENABLE_INSTRUCTIONS), so 8-bit activations would saturate; using 7-bit "
          "activations (reduced range), which keeps the results correct", file=sys.stderr)
    return True


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q int8 (N, K), s float32 (N,))`` with ``W ≈ s[:, None] * Q`` (see module doc)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` with int8 weights: ``forward(x (..., K)) -> (..., N)``.

    Saved folders record it (:mod:`lmforge.compress.structure`): ``qweight``, ``scale``
    and ``bias`` are stored; ``after_load`` re-derives the kernels' forms (bf16 scales,
    fbgemm's packed weights)."""

    kind = "int8"

    def __init__(self, linear: nn.Linear, mode: Mode = "weight-only", small_batch: int = 16):
        super().__init__()
        q, scale = quantize_weight(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self._init_buffers(q, scale, bias, mode, small_batch)

    def _init_buffers(self, qweight: Tensor, scale: Tensor, bias: Tensor | None, mode: Mode,
                      small_batch: int) -> None:
        if mode not in MODES:
            raise ValueError(f"int8 mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.small_batch = mode, small_batch
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)
        self.register_buffer("scale_bf16", None, persistent=False)
        self.after_load()

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "mode": self.mode, "bias": self.bias is not None,
                "small_batch": self.small_batch}

    @classmethod
    def from_spec(cls, spec: dict) -> Int8Linear:
        """An empty layer of ``spec``'s shapes (zero weights; load them, then
        :meth:`after_load`)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        n, k = spec["out_features"], spec["in_features"]
        layer._init_buffers(torch.zeros(n, k, dtype=torch.int8), torch.ones(n),
                            torch.zeros(n) if spec["bias"] else None, spec["mode"],
                            spec["small_batch"])
        return layer

    def after_load(self) -> None:
        """Derive the kernels' forms of the stored weights (bf16 scales; in dynamic mode
        fbgemm's packed weights)."""
        self.scale_bf16 = self.scale.to(torch.bfloat16)
        if self.mode == "dynamic":
            with warnings.catch_warnings():  # qint8 tensors are deprecated (torch #184982)
                warnings.simplefilter("ignore", UserWarning)
                scale = self.scale.float()
                wq = torch.quantize_per_channel(self.qweight.float() * scale[:, None],
                                                scale.double(),
                                                torch.zeros_like(scale, dtype=torch.long), 0,
                                                torch.qint8)
            bias = None if self.bias is None else self.bias.float()
            self._packed = torch.ops.quantized.linear_prepack(wq, bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.mode == "dynamic":
            y = torch.ops.quantized.linear_dynamic(x2.float(), self._packed, _reduce_range())
        elif x2.shape[0] <= self.small_batch:
            y = torch.ops.aten._weight_int8pack_mm(x2.to(torch.bfloat16), self.qweight,
                                                   self.scale_bf16).float()
            if self.bias is not None:
                y = y + self.bias
        else:
            y = F.linear(x2.float(), self.qweight.float() * self.scale[:, None], self.bias)
        return y.to(x.dtype).reshape(*shape, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"mode={self.mode}")


def quantize_int8(model: nn.Module, mode: Mode = "weight-only") -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` by an :class:`Int8Linear` (in place; the
    model is returned in eval mode). CPU only."""
    if mode not in MODES:
        raise ValueError(f"int8 mode must be one of {', '.join(MODES)}, got {mode!r}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 quantisation runs on CPU; move the model to the CPU first")
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, mode))
        else:
            quantize_int8(child, mode)
    return model.eval()


class Int8Embedding(nn.Module):
    """A frozen ``nn.Embedding`` with int8 rows: ``forward(ids (...)) -> (..., d)``, each
    row ``s_v Q_v`` (see the module doc). An empty table from ``Int8Embedding(V, d)``;
    :meth:`from_embedding` quantises one."""

    kind = "int8-embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim,
                                                    dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        table = cls(embedding.num_embeddings, embedding.embedding_dim)
        q, scale = quantize_weight(embedding.weight)
        table.qweight.copy_(q)
        table.scale.copy_(scale)
        return table

    def spec(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_spec(cls, spec: dict) -> Int8Embedding:
        return cls(spec["num_embeddings"], spec["embedding_dim"])

    @property
    def weight(self) -> Tensor:
        """The whole dequantised table (V, d), made on each access (models read its dtype
        and device); lookups dequantise only their rows."""
        return self.qweight.to(self.scale.dtype) * self.scale[:, None]

    def forward(self, ids: Tensor) -> Tensor:
        # F.embedding raises IndexError for ids outside [0, V) (plain indexing would wrap
        # negative ids), which lmforge.models.base.embed_ids turns into a clear error.
        q = F.embedding(ids, self.qweight)
        return q.to(self.scale.dtype) * F.embedding(ids, self.scale[:, None])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


def quantize_embeddings_int8(model: nn.Module, skip: Sequence[str] = ()) -> nn.Module:
    """Replace every ``nn.Embedding`` of ``model`` whose path ``skip`` does not name
    (:mod:`lmforge.compress.select`) by an :class:`Int8Embedding` (in place; the model is
    returned in eval mode). An output head tied to a table keeps the fp32 weight (or
    quantise the head too: ``quantize_int8`` / ``quantize_int4``)."""
    with torch.no_grad():
        for name, emb in named_layers(model, nn.Embedding, skip=skip):
            model.set_submodule(name, Int8Embedding.from_embedding(emb))
    return model.eval()
