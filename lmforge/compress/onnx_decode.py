r"""Generate text with an exported decoder in ONNX Runtime, through lmforge's own decoding.

:class:`OnnxCausalLM` stands in for :class:`lmforge.models.gpt.GPT` wherever
:mod:`lmforge.generate` uses one: ``model(ids, mask, cache=..., last_only=True)``,
``model.new_cache(B, max_len)``, ``cache.reorder(rows)``, ``model.config``. So every
decoding rule (greedy, temperature, top-k, top-p, repetition and presence/frequency
penalties, bad and forced words, stop strings, streaming, beam search) is the same code as
for the eager model, :func:`lmforge.generate.process_logits` included, and greedy decoding
gives the same tokens.

The cache is the graph's past (:mod:`lmforge.compress.onnx_graphs`): per layer, the keys
and values of every position so far, (B, h_kv, S, d_h), and the padding mask (B, S). A
step feeds the new tokens with ``attention_mask = [cached mask ; new mask]`` and the past,
and keeps the presents (the past grown by the new positions) for the next step. The first
step's past has length 0. Each step copies the past once (``concat`` in the graph), where
the eager cache writes in place: O(S) memory traffic per step, as in Hugging Face's ONNX
decoders.

ONNX Runtime runs on the CPU with ``torch.get_num_threads()`` threads
(:func:`lmforge.compress.onnx_export.onnx_session`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, ModelInputError
from ..models.gpt import GPTConfig
from .onnx_export import onnx_session, read_sidecar


class OnnxPast:
    """Keys and values of every layer, (B, h_kv, S, d_h) each, and the mask (B, S) of the
    positions so far; ``length`` is S."""

    def __init__(self, arrays: list[np.ndarray], attention_mask: np.ndarray):
        self.arrays, self.attention_mask = arrays, attention_mask
        self.length = attention_mask.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep (or repeat) rows ``index`` of the batch."""
        rows = index.cpu().numpy()
        self.arrays = [a[rows] for a in self.arrays]
        self.attention_mask = self.attention_mask[rows]


class OnnxCausalLM:
    """An exported GPT in ONNX Runtime, called like :class:`lmforge.models.gpt.GPT` by
    :mod:`lmforge.generate` (see the module docstring). Inference only, on the CPU."""

    training = False

    def __init__(self, session: Any, sidecar: dict[str, Any]):
        if sidecar.get("arch") != "gpt":
            raise ConfigError(f"generation needs an exported decoder (arch gpt); this ONNX "
                              f"file holds arch {sidecar.get('arch')!r}")
        self.session = session
        self.config = GPTConfig(**sidecar["config"])
        dtypes = {i["name"]: i["dtype"] for i in sidecar["inputs"]}
        self.past_names = [name for name in dtypes if name.startswith("past_")]
        self.output_names = [o["name"] for o in sidecar["outputs"]]
        self._past_dtype = np.dtype(dtypes[self.past_names[0]])
        self._device_tensor = torch.empty(0)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxCausalLM:
        """From a ``.onnx`` file and its sidecar (``lmforge export onnx``)."""
        sidecar = read_sidecar(path)
        return cls(onnx_session(path, threads), sidecar)

    def parameters(self) -> Iterator[torch.Tensor]:
        """A CPU tensor: :mod:`lmforge.generate` places its tensors where the first
        parameter lives."""
        yield self._device_tensor

    def eval(self) -> OnnxCausalLM:
        return self

    def train(self, mode: bool = True) -> OnnxCausalLM:
        if mode:
            raise ConfigError("an ONNX Runtime model runs inference only")
        return self

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  dtype: torch.dtype | None = None) -> OnnxPast:
        """An empty past (length 0) for ``batch_size`` rows; it grows as needed, so
        ``max_len`` and ``dtype`` (the eager cache's preallocation) are not used."""
        cfg = self.config
        shape = (batch_size, cfg.n_kv_head, 0, cfg.head_dim)
        return OnnxPast([np.zeros(shape, self._past_dtype) for _ in self.past_names],
                        np.zeros((batch_size, 0), np.int64))

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 cache: OnnxPast | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V) of ``input_ids`` (B, T) after the ``cache``'s positions, which
        then holds the new ones too; ``last_only``: (B, 1, V)."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        B, T = ids.shape
        past = cache if cache is not None else self.new_cache(B)
        new = np.ones((B, T), np.int64) if attention_mask is None else \
            attention_mask.cpu().numpy().astype(np.int64)
        mask = np.concatenate([past.attention_mask, new], axis=1)  # (B, S)
        longest = int(mask.sum(1).max())
        if longest > self.config.max_seq_len:
            raise ModelInputError(f"sequence length {longest} exceeds max_seq_len "
                                  f"{self.config.max_seq_len}")
        feeds = {"input_ids": ids, "attention_mask": mask,
                 **dict(zip(self.past_names, past.arrays, strict=True))}
        logits, *present = self.session.run(self.output_names, feeds)
        if cache is not None:
            cache.arrays, cache.attention_mask, cache.length = present, mask, mask.shape[1]
        return torch.from_numpy(logits[:, -1:] if last_only else logits)


def load_onnx_decoder(onnx_path: str | Path | None = None, source: str | Path | None = None,
                      threads: int | None = None) -> tuple[OnnxCausalLM, Any]:
    """``(model, tokenizer)`` for generation in ONNX Runtime.

    From ``onnx_path`` (written by ``lmforge export onnx``) with the tokenizer beside it,
    else ``source``'s; without ``onnx_path``, ``source`` is exported to a temporary folder
    first (seconds; the session keeps the graph in memory, the folder is removed)."""
    from ..hub import load_pretrained, load_tokenizer

    if onnx_path is None:
        if source is None:
            raise ConfigError("give an exported .onnx file or a model to export")
        from .onnx_export import export_model

        model, tokenizer = load_pretrained(source, require_tokenizer=True)
        with tempfile.TemporaryDirectory(prefix="lmforge-onnx-") as folder:
            exported = export_model(model, Path(folder) / "model.onnx", source=str(source))
            return OnnxCausalLM.load(exported.model, threads), tokenizer
    sidecar = read_sidecar(onnx_path)
    lm = OnnxCausalLM(onnx_session(onnx_path, threads), sidecar)
    beside = Path(onnx_path).parent / "tokenizer.json"
    if sidecar.get("tokenizer") and beside.is_file():
        from ..tokenize import Tokenizer

        return lm, Tokenizer.load(beside.parent)
    if source is None:
        raise CheckpointError(f"{onnx_path} has no tokenizer.json beside it; give the "
                              "model it was exported from for its tokenizer")
    return lm, load_tokenizer(source)
