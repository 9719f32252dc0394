"""PEFT LoRA adapter folders <-> lmforge models with :mod:`lmforge.nn.lora` adapters.

A PEFT adapter folder (``PeftModel.save_pretrained``) holds two files:

- ``adapter_config.json``: ``peft_type: "LORA"``, ``task_type``, ``r``, ``lora_alpha``,
  ``lora_dropout``, ``target_modules``, ``modules_to_save``, ``bias``, ``use_rslora``,
  ``fan_in_fan_out``, ``base_model_name_or_path``;
- ``adapter_model.safetensors``, keyed by the Hugging Face model's own names under
  ``base_model.model.``, without PEFT's in-memory adapter name (``.default``)::

      base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight  (r, in)
      base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight  (out, r)
      base_model.model.classifier.weight                     (a module to save, in full)
      base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.bias
                                                  (bias of an adapted layer, bias != none)

The Hugging Face names are those of the class that ``lmforge convert --to hf`` writes
(``BertForSequenceClassification``, ``RobertaForTokenClassification``,
``GPT2LMHeadModel``, ``DebertaV2Model``, ...), taken from each family's converter.
PEFT's task types train the head in full and always save it (``SEQ_CLS``/``TOKEN_CLS``:
``classifier``, ``QUESTION_ANS``: ``qa_outputs``), so :func:`save_peft_adapter` always
writes it too. GPT-2 stores its layers as ``Conv1D``: the adapter says
``fan_in_fan_out: true``; A and B keep their shapes, a saved full weight is transposed.

With a key active (:func:`lmforge.privacy.encrypted_io.using_key`) both files are
written encrypted, and :func:`load_peft_adapter` decrypts them in memory; without one they
are PEFT's own plaintext files.

Covered: BERT and RoBERTa (every head), DeBERTa-v2 (heads none and mlm), GPT-2-style
GPT. Llama-style GPTs are refused: lmforge fuses q/k/v into one layer, PEFT adapts
``q_proj``/``v_proj`` separately, and a rank-r update of one is not one of the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save

from ..errors import CheckpointError, ConfigError
from ..io import read_json
from ..nn.lora import LoraConfig, apply_lora, lora_parameter_names, merge_lora
from ..privacy.encrypted_io import write_bytes, write_json

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "save_peft_adapter", "load_peft_adapter"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_BIN = "adapter_model.bin"
_KEY_PREFIX = "base_model.model."
_LORA_KEYS = (".lora_A.weight", ".lora_B.weight")
_MODULES_TO_SAVE_COPY = re.compile(r"\.modules_to_save\.[^.]+\.")
# The HF modules each PEFT task type adds to modules_to_save (peft/peft_model.py).
_TASK_MODULES = {"SEQ_CLS": ("classifier", "score"), "TOKEN_CLS": ("classifier", "score"),
                 "QUESTION_ANS": ("qa_outputs",)}
# Config fields that change what an adapter computes and that lmforge does not model:
# they must be absent or empty.
_UNSUPPORTED = ("use_dora", "lora_bias", "rank_pattern", "alpha_pattern",
                "layer_replication", "target_parameters", "trainable_token_indices",
                "alora_invocation_tokens", "use_qalora", "use_bdlora")


@dataclass(frozen=True)
class _Layout:
    """How an lmforge model's tensors are named in its Hugging Face class."""

    names: dict[str, str]  # lmforge tensor -> HF tensor, for each tensor the HF model has
    transposed: frozenset[str]  # lmforge weights HF stores transposed (GPT-2's Conv1D)
    base_prefix: str  # the base model's attribute in HF task classes: "bert.", ...
    task_type: str | None  # PEFT task type of the head
    fan_in_fan_out: bool


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same architecture without LoRA and without memory, for its tensor names."""
    with torch.device("meta"):
        return type(model)(model.config)


def _bert_layout(model) -> _Layout:
    from .bert import hf_names

    cfg = model.config
    prefix = "" if cfg.head == "none" else f"{cfg.flavor}."
    names = hf_names(_meta_copy(model), prefix)
    if cfg.head in ("mlm", "token_cls", "qa"):  # export drops it: these HF classes lack one
        names = {k: v for k, v in names.items() if not k.startswith("pooler.")}
    task = {"none": "FEATURE_EXTRACTION", "seq_cls": "SEQ_CLS", "token_cls": "TOKEN_CLS",
            "qa": "QUESTION_ANS"}.get(cfg.head)
    return _Layout(names, frozenset(), f"{cfg.flavor}.", task, False)


def _deberta_layout(model) -> _Layout:
    from .deberta import _hf_name

    prefix = "deberta." if model.config.head == "mlm" else ""
    names = {n: _hf_name(n, prefix) for n in _meta_copy(model).state_dict()}
    task = "FEATURE_EXTRACTION" if model.config.head == "none" else None
    return _Layout(names, frozenset(), "deberta.", task, False)


# lmforge GPT -> GPT2LMHeadModel (the table of lmforge.hf.gpt, by module).
_GPT2_TOP = {"wte": "transformer.wte", "wpe": "transformer.wpe", "norm_f": "transformer.ln_f",
             "lm_head": "lm_head"}
_GPT2_BLOCK = {"norm1": "ln_1", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj",
               "norm2": "ln_2", "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"}
_GPT2_CONV1D = ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")


def _gpt_layout(model) -> _Layout:
    from .gpt import hf_target

    cfg = model.config
    if hf_target(cfg) != "gpt2":
        raise CheckpointError("PEFT adapters of llama-style GPTs are not supported: lmforge "
                              "fuses q/k/v (and gate/up) into one layer, which PEFT adapts "
                              "as separate layers")
    names, transposed = {}, set()
    for name in _meta_copy(model).state_dict():
        module, _, leaf = name.rpartition(".")
        if module == "lm_head" and cfg.tie_embeddings:
            continue
        if module in _GPT2_TOP:
            names[name] = f"{_GPT2_TOP[module]}.{leaf}"
            continue
        _, i, sub = module.split(".", 2)  # blocks.{i}.{sub}
        names[name] = f"transformer.h.{i}.{_GPT2_BLOCK[sub]}.{leaf}"
        if sub in _GPT2_CONV1D and leaf == "weight":
            transposed.add(name)
    return _Layout(names, frozenset(transposed), "transformer.", "CAUSAL_LM", True)


_LAYOUTS = {"BertModel": _bert_layout, "DebertaV2": _deberta_layout, "GPT": _gpt_layout}


def _layout(model: torch.nn.Module) -> _Layout:
    for cls in type(model).__mro__:
        if cls.__name__ in _LAYOUTS:
            return _LAYOUTS[cls.__name__](model)
    raise CheckpointError(f"PEFT adapters of {type(model).__name__} are not supported; "
                          f"supported: {', '.join(_LAYOUTS)}")


def _within(name: str, modules: Iterable[str]) -> bool:
    """Whether ``name`` is one of ``modules`` or inside one."""
    return any(name == m or name.startswith(m + ".") for m in modules)


def _module_of(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def _collapse(chosen: set[str], every: Iterable[str]) -> list[str]:
    """The fewest module names that cover the tensors ``chosen``: each tensor's module,
    widened to an ancestor while every tensor under that ancestor is chosen."""
    every = list(every)
    out = set()
    for name in chosen:
        parts = _module_of(name).split(".")
        best = ".".join(parts)
        for i in range(len(parts) - 1, 0, -1):
            ancestor = ".".join(parts[:i])
            if not all(n in chosen for n in every if n.startswith(ancestor + ".")):
                break
            best = ancestor
        out.add(best)
    return sorted(out)


def _hf_module(layout: _Layout, module: str) -> str:
    hf = layout.names.get(f"{module}.weight")
    if hf is None:
        raise CheckpointError(f"{module} has no Hugging Face counterpart; it cannot be "
                              "saved in a PEFT adapter")
    return _module_of(hf)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


# ------------------------------------------------------------------------------- save

def save_peft_adapter(model: torch.nn.Module, cfg: LoraConfig | None, folder: str | Path, *,
                      base_model_name_or_path: str | None = None) -> Path:
    """Write the model's LoRA adapter as a PEFT adapter folder (``adapter_config.json`` +
    ``adapter_model.safetensors``) that ``peft.PeftModel.from_pretrained`` loads on top of
    the Hugging Face model ``lmforge convert --to hf`` gives for the same base.

    ``cfg`` is the config given to :func:`~lmforge.nn.lora.apply_lora` (``None``: the
    one it recorded); a config that disagrees with the model raises ``ConfigError``.
    Each file is written atomically, the weights first, encrypted when a key is active
    (only PEFT's plaintext folder is what ``peft`` loads). Returns ``folder``.
    """
    lcfg = getattr(model, "lora_config", None)
    if not isinstance(lcfg, LoraConfig):
        raise ConfigError("the model has no LoRA adapters; call apply_lora(model, cfg) first")
    if cfg is not None:
        for field in ("r", "alpha", "dropout", "use_rslora", "bias"):
            if getattr(cfg, field) != getattr(lcfg, field):
                raise ConfigError(f"LoraConfig.{field}={getattr(cfg, field)!r} differs from "
                                  f"the model's adapters ({getattr(lcfg, field)!r})")
    layout = _layout(model)
    targets = set(lcfg.target_modules)
    # Saved whole: modules_to_save, and the head that PEFT's task type trains in full
    # whatever modules_to_save says (its values are the base model's unless trained).
    heads = _TASK_MODULES.get(layout.task_type, ())
    whole = {n for n, hf in layout.names.items()
             if _within(n, lcfg.modules_to_save) or _within(hf, heads)}
    clash = sorted({_module_of(n) for n in whole} & targets)
    if clash:
        raise CheckpointError(f"{clash[0]} belongs to the {layout.task_type} head, which "
                              "PEFT trains in full; it cannot carry LoRA in a PEFT adapter")
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for name in sorted(set(lora_parameter_names(model)) | whole):
        module, _, leaf = name.rpartition(".")
        owner, _, kind = module.rpartition(".")
        t = state[name].detach()
        if kind in ("lora_A", "lora_B") and owner in targets:
            key = f"{_hf_module(layout, owner)}.{kind}.{leaf}"
        elif module in targets:  # the bias of an adapted layer (bias != "none")
            key = f"{_hf_module(layout, module)}.base_layer.{leaf}"
        elif name in layout.names:
            key = layout.names[name]
            t = t.t() if name in layout.transposed else t
        else:
            raise CheckpointError(f"{name} has no Hugging Face counterpart; it cannot be "
                                  "saved in a PEFT adapter")
        tensors[_KEY_PREFIX + key] = t.contiguous().cpu().clone()
    config = {
        "peft_type": "LORA",
        "task_type": layout.task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "r": lcfg.r,
        "lora_alpha": _number(lcfg.alpha),
        "lora_dropout": float(lcfg.dropout),
        "target_modules": sorted(_hf_module(layout, t) for t in targets),
        "modules_to_save": _collapse({layout.names[n] for n in whole},
                                     layout.names.values()) or None,
        "bias": lcfg.bias,
        "use_rslora": lcfg.use_rslora,
        "fan_in_fan_out": layout.fan_in_fan_out,
        "init_lora_weights": True,
        "use_dora": False,
        "lora_bias": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
        "layers_pattern": None,
        "exclude_modules": None,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / ADAPTER_WEIGHTS, save(tensors, metadata={"format": "pt"}))
    write_json(folder / ADAPTER_CONFIG, config)
    return folder


# ------------------------------------------------------------------------------- load

def _read_adapter_config(folder: Path) -> dict:
    path = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise CheckpointError(f"PEFT adapter folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {ADAPTER_CONFIG}; it is not a PEFT adapter "
                              "folder")
    raw = read_json(path)
    if raw.get("peft_type") != "LORA":
        raise CheckpointError(f"{path}: peft_type {raw.get('peft_type')!r} is not supported "
                              "(only 'LORA')")
    for field in _UNSUPPORTED:
        if raw.get(field):
            raise CheckpointError(f"{path}: {field}={raw[field]!r} is not supported by "
                                  "lmforge's LoRA")
    return raw


def _read_adapter_weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    from .io import _read_one

    for name in (ADAPTER_WEIGHTS, _ADAPTER_BIN):
        if (folder / name).is_file():
            return folder / name, _read_one(folder / name)
    raise CheckpointError(f"{folder} has no {ADAPTER_WEIGHTS} (nor {_ADAPTER_BIN})")


def _hf_to_lmforge(layout: _Layout) -> dict[str, str]:
    """HF tensor -> lmforge tensor, accepting names with and without the base-model
    prefix (an adapter trained on ``BertModel`` fits ``BertForSequenceClassification``)."""
    out = {}
    for lm, hf in layout.names.items():
        out[hf] = lm
        p = layout.base_prefix
        alias = hf[len(p):] if hf.startswith(p) else p + hf
        out.setdefault(alias, lm)
    return out


def _check_fit(model: torch.nn.Module, values: dict[str, torch.Tensor], wfile: Path) -> None:
    """Every adapter tensor of ``model`` has a value in ``values``, with its shape."""
    expected = model.state_dict()
    adapter = set(lora_parameter_names(model))
    missing = sorted(adapter - set(values))
    if missing:
        raise CheckpointError(f"{wfile}: missing tensor for {missing[0]}")
    for name, t in sorted(values.items()):
        if name not in adapter:
            raise CheckpointError(f"{wfile}: tensor for {name} is not part of a LoRA adapter "
                                  f"with bias={model.lora_config.bias!r}")
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{wfile}: tensor for {name} has shape {tuple(t.shape)}, "
                                  f"the model expects {tuple(expected[name].shape)}")


def load_peft_adapter(model: torch.nn.Module, folder: str | Path) -> LoraConfig:
    """Apply the LoRA adapter of a PEFT folder (``PeftModel.save_pretrained``) to
    ``model``, an lmforge model holding the same base weights (for example loaded with
    :func:`lmforge.hub.load_pretrained` from the base's Hugging Face folder).

    The adapted layers and the modules to save are read from the tensor names; every
    tensor must find its place, with its shape. Encrypted files are decrypted in memory
    with the active key (without it: a one-line :class:`ConfigError` naming the key
    options). Returns the :class:`LoraConfig` applied
    (full lmforge module names). A missing file, an unsupported ``peft_type`` or option,
    a task type other than the model's head, or a tensor that does not fit raises
    :class:`CheckpointError`, and leaves ``model`` as it was.
    """
    folder = Path(folder)
    raw = _read_adapter_config(folder)
    wfile, state = _read_adapter_weights(folder)
    layout = _layout(model)
    task = raw.get("task_type")
    if task not in (None, "FEATURE_EXTRACTION") and task != layout.task_type:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: task_type {task!r} does not fit "
                              f"this model (its head is PEFT's {layout.task_type!r})")
    to_lm = _hf_to_lmforge(layout)
    modules = {_module_of(hf): _module_of(lm) for hf, lm in to_lm.items()
               if hf.endswith(".weight")}
    lora: dict[str, dict[str, torch.Tensor]] = {}  # lmforge module -> {"A": .., "B": ..}
    plain: dict[str, torch.Tensor] = {}  # lmforge tensor -> value
    for key, t in state.items():
        if not key.startswith(_KEY_PREFIX):
            raise CheckpointError(f"{wfile}: tensor {key} is not a PEFT key (they start "
                                  f"with {_KEY_PREFIX!r})")
        name = key[len(_KEY_PREFIX):]
        if ".original_module." in name:
            continue  # with bias="all" PEFT also saves the base's own copy of a saved module
        name = _MODULES_TO_SAVE_COPY.sub(".", name)  # ... and the trained copy, twice
        suffix = next((s for s in _LORA_KEYS if name.endswith(s)), None)
        if suffix is not None:
            lm = modules.get(name[:-len(suffix)])
            if lm is None:
                raise CheckpointError(f"{wfile}: tensor {key} adapts a layer this "
                                      f"{type(model).__name__} does not have")
            lora.setdefault(lm, {})["A" if suffix == _LORA_KEYS[0] else "B"] = t
            continue
        lm = to_lm.get(name.replace(".base_layer.", "."))
        if lm is None:
            raise CheckpointError(f"{wfile}: tensor {key} matches nothing in this "
                                  f"{type(model).__name__}")
        plain.setdefault(lm, t.t() if lm in layout.transposed else t)
    r = raw.get("r", 8)
    for lm, pair in lora.items():
        for part in "AB":
            if part not in pair:
                raise CheckpointError(f"{wfile}: the LoRA of {lm} has no lora_{part} weight")
        if pair["A"].shape[0] != r or pair["B"].shape[-1] != r:
            raise CheckpointError(f"{wfile}: the LoRA of {lm} has rank {pair['A'].shape[0]}, "
                                  f"the config says r={r}")
    if not lora:
        raise CheckpointError(f"{wfile} holds no LoRA weights")
    # A module to save brings every tensor of its own; a lone bias is a trained bias.
    whole = {_module_of(n) for n in plain if n.rpartition(".")[2] != "bias"} - set(lora)
    save_names = [n for n in plain if _module_of(n) in whole]
    try:
        cfg = LoraConfig(r=r, alpha=raw.get("lora_alpha", 8),
                         dropout=raw.get("lora_dropout", 0.0) or 0.0,
                         target_modules=sorted(lora), use_rslora=bool(raw.get("use_rslora")),
                         modules_to_save=_collapse(set(save_names), layout.names),
                         bias=raw.get("bias", "none"))
    except ConfigError as e:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: {e}") from None
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    apply_lora(model, cfg)
    values = {f"{lm}.lora_{part}.weight": pair[part] for lm, pair in lora.items()
              for part in "AB"}
    values.update(plain)
    try:
        _check_fit(model, values, wfile)
    except CheckpointError:
        merge_lora(model)  # B is still zero: this takes the wrappers out, weights unchanged
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        raise
    expected = model.state_dict()
    with torch.no_grad():
        for name, t in values.items():
            expected[name].copy_(t)
    return model.lora_config

