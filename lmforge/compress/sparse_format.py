r"""What a pruned model takes on disk: dense, CSR or bitmask, and a sparse safetensors file.

Sizes are those of the tensors' data (``model.safetensors`` adds a JSON header of a few
KB). A weight matrix :math:`W \in \mathbb{R}^{r \times c}` with :math:`z` non-zeros
(counted from the actual tensor) and :math:`b` bytes per element takes

- dense: :math:`r c b`;
- CSR (compressed sparse rows): the values, one ``int32`` column index per value and
  :math:`r + 1` ``int32`` row pointers, :math:`z b + 4 z + 4 (r + 1)`;
- bitmask: one bit per entry (row-major, packed 8 to a byte) plus the values,
  :math:`\lceil r c / 8 \rceil + z b`.

In fp32, CSR is smaller than dense only above 50% sparsity (each value carries a 4-byte
index); the bitmask is smaller from about 3% on (1/32 of a bit per weight), so it is the
better encoding at the sparsities magnitude pruning reaches. Only the pruned weights
(``include``, as in :mod:`lmforge.compress.prune`) are encoded; every other tensor is
counted dense, tied tensors once.

:func:`save_sparse` writes exactly those bytes as a safetensors file: a pruned weight
``name`` becomes ``name.values`` plus ``name.col_indices`` and ``name.row_ptr`` (CSR) or
``name.bitmask`` (uint8), with its shape and encoding in the header's ``__metadata__``;
:func:`load_sparse` returns the dense state dict. Zeros make no dense CPU kernel faster,
and this format is for storage only: load it back to dense weights to run the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .prune import Include, prunable_linears

Encoding = Literal["csr", "bitmask"]
ENCODINGS = ("csr", "bitmask")
_INDEX_BYTES = 4  # int32 column indices and row pointers


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")


def encoded_bytes(weight: Tensor, encoding: Encoding) -> int:
    """Bytes of a 2-D ``weight`` in ``encoding`` (module docstring)."""
    _check_encoding(encoding)
    rows, numel = weight.shape[0], weight.numel()
    nnz, b = int(torch.count_nonzero(weight)), weight.element_size()
    if encoding == "csr":
        return nnz * b + nnz * _INDEX_BYTES + (rows + 1) * _INDEX_BYTES
    return math.ceil(numel / 8) + nnz * b


def _unique_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict with tied tensors once (what a model folder stores)."""
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict().items():
        if t.numel() and t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        out[name] = t
    return out


def dense_bytes(model: nn.Module) -> int:
    """Bytes of every tensor of the model stored dense (tied tensors once)."""
    return sum(t.numel() * t.element_size() for t in _unique_tensors(model).values())


def sparse_bytes(model: nn.Module, encoding: Encoding = "bitmask",
                 include: Include = "blocks") -> int:
    """Bytes with the ``include`` weights in ``encoding`` and the rest dense."""
    _check_encoding(encoding)
    sparse = {f"{n}.weight" for n in prunable_linears(model, include)}
    return sum(encoded_bytes(t, encoding) if name in sparse else t.numel() * t.element_size()
               for name, t in _unique_tensors(model).items())


def _encode(weight: Tensor, encoding: Encoding) -> dict[str, Tensor]:
    w = weight.detach().cpu()
    nonzero = w != 0
    parts = {"values": w[nonzero].contiguous()}  # row-major order
    if encoding == "csr":
        parts["col_indices"] = nonzero.nonzero()[:, 1].to(torch.int32).contiguous()
        counts = nonzero.sum(dim=1, dtype=torch.int32)
        parts["row_ptr"] = torch.cat([counts.new_zeros(1), counts.cumsum(0, dtype=torch.int32)])
    else:
        parts["bitmask"] = torch.from_numpy(np.packbits(nonzero.flatten().numpy()))
    return parts


def save_sparse(model: nn.Module, path: str | Path, encoding: Encoding = "bitmask",
                include: Include = "blocks") -> None:
    """Write the model's tensors to ``path`` (safetensors), the ``include`` weights in
    ``encoding``; the tensor data takes exactly :func:`sparse_bytes` bytes."""
    _check_encoding(encoding)
    sparse = {f"{n}.weight" for n in prunable_linears(model, include)}
    tensors: dict[str, Tensor] = {}
    layout: dict[str, dict] = {}
    for name, t in _unique_tensors(model).items():
        if name in sparse:
            for part, value in _encode(t, encoding).items():
                tensors[f"{name}.{part}"] = value
            layout[name] = {"encoding": encoding, "shape": list(t.shape)}
        else:
            tensors[name] = t.detach().cpu().contiguous()
    save_file(tensors, str(path), metadata={"format": "pt",
                                            "lmforge_sparse": json.dumps(layout)})


def _decode(parts: dict[str, Tensor], spec: dict, source: str) -> Tensor:
    rows, cols = spec["shape"]
    values = parts["values"]
    if spec["encoding"] == "csr":
        row_of = torch.repeat_interleave(torch.arange(rows),
                                         parts["row_ptr"].long().diff())
        out = values.new_zeros(rows, cols)
        out[row_of, parts["col_indices"].long()] = values
        return out
    if spec["encoding"] == "bitmask":
        bits = np.unpackbits(parts["bitmask"].numpy(), count=rows * cols)
        out = values.new_zeros(rows * cols)
        out[torch.from_numpy(bits.astype(bool))] = values
        return out.view(rows, cols)
    raise CheckpointError(f"{source}: unknown sparse encoding {spec['encoding']!r}")


def load_sparse(path: str | Path) -> dict[str, Tensor]:
    """The dense state dict of a file written by :func:`save_sparse`."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "lmforge_sparse" not in meta:
        raise CheckpointError(f"{path} is not a sparse lmforge file (no lmforge_sparse "
                              "metadata)")
    layout = json.loads(meta["lmforge_sparse"])
    tensors = load_file(str(path))
    out = {}
    for name, spec in layout.items():
        prefix = f"{name}."
        parts = {k[len(prefix):]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)
                 and k[len(prefix):] in ("values", "col_indices", "row_ptr", "bitmask")}
        out[name] = _decode(parts, spec, str(path))
    out.update(tensors)
    return out


__all__ = ["dense_bytes", "sparse_bytes", "encoded_bytes", "save_sparse", "load_sparse",
           "ENCODINGS"]
