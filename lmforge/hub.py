"""Loading models and tokenizers from folders: lmforge's own and Hugging Face's.

``model, tokenizer = load_pretrained(path)`` accepts

- an lmforge model folder (``config.json`` with ``arch`` + ``model.safetensors`` +
  ``tokenizer.json``), such as one written by ``save_pretrained`` or ``lmforge convert``;
- an lmforge run folder, in which case the best checkpoint (lowest validation loss) is
  used, or the latest when no evaluation has run;
- a Hugging Face model folder (``config.json`` with ``model_type``, weights as
  safetensors or ``pytorch_model.bin``, sharded or not). The family's converter
  (:mod:`lmforge.hf`) builds the lmforge model; the tokenizer comes from
  ``tokenizer.json``, a WordPiece ``vocab.txt``, or GPT-2's ``vocab.json`` +
  ``merges.txt``;
- a Hugging Face model id (``gpt2``, ``org/name``) that is already in the local Hugging
  Face cache. Nothing is ever downloaded.

A folder encrypted at rest (``lmforge encrypt``), wholly or in part, loads with its key:
``load_pretrained(path, key=KeySource)`` (or inside
:func:`lmforge.privacy.encrypted_io.using_key`). Each file is decrypted in memory and
parsed from bytes; no plaintext is written to disk.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CheckpointError, ConfigError
from .privacy.encrypted_io import read_bytes, read_json, using_key

if TYPE_CHECKING:
    from .privacy.keys import KeySource

__all__ = ["resolve_model_dir", "load_tokenizer", "load_pretrained", "load_hf_folder",
           "hf_tokenizer", "hf_cache_snapshot", "model_kind"]


def hf_cache_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of Hugging Face model ``repo_id``, or None.

    Looks in ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``;
    uses the snapshot ``refs/main`` points to, else the newest one.
    """
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id) or repo_id.startswith("."):
        return None
    if os.environ.get("HF_HUB_CACHE"):
        root = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        root = Path(os.environ["HF_HOME"]) / "hub"
    else:
        root = Path.home() / ".cache" / "huggingface" / "hub"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
        if (snap / "config.json").is_file():
            return snap
    snaps = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return snaps[-1].parent if snaps else None


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder behind ``path``: itself, a run's best/latest checkpoint, or the
    cached snapshot of a Hugging Face model id."""
    from .train import best_checkpoint, latest_checkpoint

    p = Path(path)
    if not p.exists():
        snap = hf_cache_snapshot(str(path))
        if snap is not None:
            return snap
        raise CheckpointError(f"{p} does not exist (nor is it a model in the local Hugging "
                              "Face cache; lmforge never downloads)")
    if (p / "config.json").is_file():
        return p
    if (p / "checkpoints").is_dir():
        ckpt = best_checkpoint(p) or latest_checkpoint(p)
        if ckpt is None:
            raise CheckpointError(f"run folder {p} has no checkpoint yet")
        return Path(ckpt)
    raise CheckpointError(f"{p} is neither a model folder (config.json) nor a run folder "
                          "(checkpoints/)")


def _merges(text: str) -> list[tuple[str, str]]:
    """The merges of a ``merges.txt`` as ``BPE.from_file`` reads them: one ``a b`` pair a
    line, ``#version`` lines skipped; anything else is an error naming the line."""
    from .tokenize.tokenizer import text_lines

    pairs = []
    for n, line in enumerate(text_lines(text), 1):
        if line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"merges.txt line {n} is not a pair of tokens")
        pairs.append((parts[0], parts[1]))
    return pairs


def _gpt2_bpe_files(folder: Path):  # -> Tokenizer
    """A tokenizer from GPT-2's original ``vocab.json`` + ``merges.txt`` (no
    ``tokenizer.json``): byte-level BPE, no prefix space, ``<|endoftext|>`` special."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    from .tokenize import Tokenizer

    vocab, merges = read_bytes(folder / "vocab.json"), read_bytes(folder / "merges.txt")
    try:
        bpe = models.BPE(json.loads(vocab.decode("utf-8")), _merges(merges.decode("utf-8")))
    except Exception as e:  # the Rust side raises a plain Exception
        raise CheckpointError(f"{folder}: vocab.json/merges.txt are not a valid BPE "
                              f"vocabulary: {str(e).splitlines()[0] if str(e) else e}") from None
    hf = HFTokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    vocab = hf.get_vocab()
    specials = [t for t in ("<|endoftext|>",) if t in vocab]
    hf.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return Tokenizer.from_hf(hf)


def hf_tokenizer(folder: str | Path):
    """The tokenizer of a Hugging Face folder, or None when it has no tokenizer files."""
    from .tokenize import Tokenizer

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
        return Tokenizer.load(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _gpt2_bpe_files(folder)
    return None


def load_tokenizer(path: str | Path):
    """The tokenizer of a tokenizer.json, a model folder (lmforge or Hugging Face) or a
    run folder."""
    from .tokenize import Tokenizer

    p = Path(path)
    if p.is_file() or (p / "tokenizer.json").is_file():
        return Tokenizer.load(p)
    folder = resolve_model_dir(path)
    tok = hf_tokenizer(folder)
    if tok is None:
        raise CheckpointError(f"{folder} has no tokenizer (tokenizer.json, vocab.txt or "
                              "vocab.json + merges.txt)")
    return tok


def load_hf_folder(folder: str | Path):
    """``model, tokenizer`` from a Hugging Face folder, through the family's converter.

    Raises :class:`CheckpointError` for an unsupported ``model_type`` (listing the
    supported ones), a corrupt weight file, or a missing, unexpected or misshapen tensor
    (naming it and both shapes).
    """
    from .hf import converter_for_model_type
    from .hf.io import read_hf_state

    folder = Path(folder)
    cfg = read_json(folder / "config.json")
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str):
        raise CheckpointError(f"{folder / 'config.json'} has no 'model_type'")
    converter = converter_for_model_type(model_type)
    state = read_hf_state(folder)
    try:
        model = converter.load(cfg, state)
    except CheckpointError as e:
        raise CheckpointError(f"{folder}: {e}") from None
    except (ValueError, TypeError) as e:  # int("x"), float([1]), ... on a config field
        raise CheckpointError(f"{folder / 'config.json'} has an invalid value: {e}") from None
    return model, hf_tokenizer(folder)


QUANTIZE_MODES = {"int8": "weight-only", "int8-dynamic": "dynamic"}


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, quantize: str | None = None,
                    require_tokenizer: bool = False, key: KeySource | None = None):
    """``model, tokenizer = load_pretrained(path_or_run)``; the model is in eval mode.

    ``path`` is an lmforge model or run folder, a Hugging Face folder, or a Hugging Face
    model id in the local cache (see the module docstring). ``tokenizer`` is None when
    the folder has none. ``dtype`` casts the weights (they load as stored: fp32).
    ``quantize`` (CPU inference only) turns every linear layer int8: ``"int8"`` weights
    only, ``"int8-dynamic"`` weights and activations (:mod:`lmforge.compress.quantize`).
    ``require_tokenizer=True`` raises :class:`CheckpointError` instead of returning None
    for a folder without a tokenizer. ``key`` opens files encrypted at rest (in memory;
    without it, the key active through ``using_key``, if any); an encrypted file without
    a key raises :class:`ConfigError`, a wrong key or a damaged file
    :class:`CheckpointError`, before anything is loaded.
    """
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, "
                          f"got {quantize!r}")
    with using_key(key):
        folder, model, tokenizer = _load_folder(path)
    if tokenizer is None and require_tokenizer:
        raise CheckpointError(f"{folder} has no tokenizer (tokenizer.json, vocab.txt or "
                              "vocab.json + merges.txt)")
    model = model.to(map_location)
    if dtype is not None:
        model = model.to(dtype)
    if quantize is not None:
        from .compress.quantize import quantize_int8

        if torch.device(map_location).type != "cpu":
            raise ConfigError("quantize: int8 layers run on the CPU only")
        quantize_int8(model, QUANTIZE_MODES[quantize])
    return model.eval(), tokenizer


def _load_folder(path: str | Path):
    """``(folder, model, tokenizer or None)``: the model folder behind ``path`` and what
    it holds, on the CPU."""
    from .hf.io import is_hf_folder
    from .models.base import load_model_folder
    from .tokenize import Tokenizer

    folder = resolve_model_dir(path)
    if is_hf_folder(folder):
        model, tokenizer = load_hf_folder(folder)
    else:
        model = load_model_folder(folder, "cpu")
        tokenizer = None
        if (folder / "tokenizer.json").is_file():
            tokenizer = Tokenizer.load(folder)
        elif Path(path).is_dir() and (Path(path) / "tokenizer.json").is_file():
            tokenizer = Tokenizer.load(path)  # a run folder with the tokenizer at its root
    return folder, model, tokenizer


def model_kind(path: str | Path) -> str:
    """``"hf"`` or ``"lmforge"``: which kind of folder ``path`` resolves to."""
    from .hf.io import is_hf_folder

    return "hf" if is_hf_folder(resolve_model_dir(path)) else "lmforge"

