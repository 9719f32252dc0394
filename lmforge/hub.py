"""Loading models and tokenizers from folders.

``load_pretrained(path)`` accepts a model folder (``config.json`` + ``model.safetensors``
+ ``tokenizer.json``) or a run folder, in which case the best checkpoint (lowest
validation loss) is used, or the latest when no evaluation has run.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder behind ``path``: itself, or a run's best/latest checkpoint."""
    from .train import best_checkpoint, latest_checkpoint

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    if (p / "config.json").is_file():
        return p
    if (p / "checkpoints").is_dir():
        ckpt = best_checkpoint(p) or latest_checkpoint(p)
        if ckpt is None:
            raise CheckpointError(f"run folder {p} has no checkpoint yet")
        return Path(ckpt)
    raise CheckpointError(f"{p} is neither a model folder (config.json) nor a run folder "
                          "(checkpoints/)")


def load_tokenizer(path: str | Path):
    """The tokenizer of a tokenizer.json, a model folder or a run folder."""
    from .tokenize import Tokenizer

    p = Path(path)
    if p.is_file() or (p / "tokenizer.json").is_file():
        return Tokenizer.load(p)
    return Tokenizer.load(resolve_model_dir(p))


def load_pretrained(path: str | Path, map_location: str = "cpu"):
    """``model, tokenizer = load_pretrained(path_or_run)``; the model is in eval mode."""
    from .models.base import load_model_folder
    from .tokenize import Tokenizer

    folder = resolve_model_dir(path)
    model = load_model_folder(folder, map_location)
    tokenizer = Tokenizer.load(folder) if (folder / "tokenizer.json").is_file() else None
    return model, tokenizer
