"""Convert model folders between lmforge and Hugging Face layouts.

``convert(src, dst, to="lmforge")`` reads a Hugging Face folder (any ``model_type`` a
converter in :mod:`lmforge.hf` supports) and writes an lmforge model folder
(``config.json`` with ``arch``, ``model.safetensors``, ``lmforge.json`` with the source
recorded, tokenizer files). ``convert(src, dst, to="hf")`` reads an lmforge model folder
or run (its best checkpoint) and writes a folder that ``transformers``'
``AutoModelForCausalLM.from_pretrained`` (or the family's Auto class) loads.

Both directions write the destination atomically: it is staged in a hidden temporary
folder and renamed into place only when complete. The CLI verb is
``lmforge convert SRC DST [--to hf|lmforge] [--overwrite]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import CheckpointError, ConfigError, LmforgeError

__all__ = ["convert", "export_hf", "import_hf"]

Target = Literal["hf", "lmforge"]


def _check_dst(src_dir: Path, dst: Path, overwrite: bool) -> None:
    if dst.resolve() == src_dir.resolve():
        raise LmforgeError(f"destination {dst} is the source folder; choose another")
    if src_dir.resolve().is_relative_to(dst.resolve()):
        raise LmforgeError(f"destination {dst} contains the source {src_dir}; choose another")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise LmforgeError(f"destination {dst} exists and is not empty; pass overwrite=True "
                           "(--overwrite) to replace it")


def import_hf(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """Hugging Face folder (or cached model id) ``src`` -> lmforge model folder ``dst``."""
    from .hf import read_hf_config
    from .hf.io import is_hf_folder
    from .hub import load_hf_folder, resolve_model_dir
    from .io import atomic_dir
    from .models.base import save_model_folder

    src_dir, dst = resolve_model_dir(src), Path(dst)
    if not is_hf_folder(src_dir):
        cfg = read_hf_config(src_dir)  # a corrupt config.json is reported as such
        if "arch" in cfg:
            raise CheckpointError(f"{src_dir} is already an lmforge model (its config.json "
                                  "has 'arch'); convert it with to='hf'")
        raise CheckpointError(f"{src_dir / 'config.json'} has no 'model_type'; it is not a "
                              "Hugging Face model folder")
    _check_dst(src_dir, dst, overwrite)
    model_type = read_hf_config(src_dir).get("model_type")
    model, tokenizer = load_hf_folder(src_dir)
    provenance = {"converted_from": {"format": "huggingface", "model_type": model_type,
                                     "path": str(src)}}
    with atomic_dir(dst) as tmp:
        save_model_folder(model, tmp, provenance)
        if tokenizer is not None:
            tokenizer.save(tmp)
    return dst


def export_hf(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """lmforge model folder or run ``src`` -> Hugging Face folder ``dst``.

    The tokenizer's bos/eos/pad ids fill ``bos_token_id``/``eos_token_id``/
    ``pad_token_id`` in ``config.json`` so that ``transformers``' ``generate`` stops
    where lmforge's does.
    """
    from .hf import converter_for_arch
    from .hf.io import is_hf_folder, write_hf_folder
    from .hub import load_pretrained, resolve_model_dir
    from .io import read_json
    from .models import arch_of

    src_dir, dst = resolve_model_dir(src), Path(dst)
    if is_hf_folder(src_dir):
        raise CheckpointError(f"{src_dir} is already a Hugging Face folder; convert it "
                              "with to='lmforge'")
    if read_json(src_dir / "config.json").get("arch") == "task":
        raise CheckpointError(f"{src} is a fine-tuned task model (encoder + task head); "
                              "Hugging Face has no folder for lmforge's task heads: use it "
                              "with 'lmforge predict' or lmforge.tasks.load_task_model "
                              "(a LoRA run's PEFT adapter is in its adapter/ folder)")
    _check_dst(src_dir, dst, overwrite)
    model, tokenizer = load_pretrained(src)
    converter = converter_for_arch(arch_of(model.config))
    assert converter.export is not None
    hf_config, state = converter.export(model)
    if tokenizer is not None:
        for role in ("bos", "eos", "pad"):
            tid = getattr(tokenizer, f"{role}_id")
            if hf_config.get(f"{role}_token_id") is None and tid is not None \
                    and tid < hf_config.get("vocab_size", tid + 1):
                hf_config[f"{role}_token_id"] = tid
    return write_hf_folder(dst, hf_config, state, tokenizer)


def convert(src: str | Path, dst: str | Path, to: Target | None = None,
            overwrite: bool = False) -> Path:
    """Convert ``src`` into ``dst``: ``to="lmforge"`` (from a Hugging Face folder) or
    ``to="hf"`` (from an lmforge folder or run). ``to=None`` picks the other format.

    An existing non-empty ``dst`` is replaced only with ``overwrite=True``. Errors
    (unsupported ``model_type``, missing or misshapen tensors, corrupt files) are
    :class:`~lmforge.errors.CheckpointError` with one-line messages.
    """
    if to is None:
        from .hub import model_kind

        to = "lmforge" if model_kind(src) == "hf" else "hf"
    if to == "lmforge":
        return import_hf(src, dst, overwrite)
    if to == "hf":
        return export_hf(src, dst, overwrite)
    raise ConfigError(f"to: must be 'hf' or 'lmforge', got {to!r}")
