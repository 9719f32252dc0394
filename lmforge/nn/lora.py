r"""LoRA: low-rank adapters on linear layers (Hu et al. 2021), as PEFT computes them.

Written by hand because lmforge teaches it; the numbers match ``peft``'s ``LoraModel``
(``tests/test_lora.py`` checks outputs, init, merge and parameter counts against it), and
:mod:`lmforge.hf.peft` reads and writes PEFT adapter folders.

A frozen linear layer ``y = x W^T + b`` (W of shape (out, in)) gets a trainable update
of rank ``r << min(in, out)``::

    y = x W^T + b + s * dropout(x) A^T B^T        A: (r, in),  B: (out, r)
    s = alpha / r                                  (use_rslora: s = alpha / sqrt(r))

so the effective weight is ``W + dW`` with ``dW = s B A``. Dropout acts on the LoRA
branch only. Initialisation (PEFT's, after Microsoft's ``loralib``): A is Kaiming-uniform
with ``a = sqrt(5)``, i.e. ``U(-1/sqrt(in), 1/sqrt(in))`` (the default init of
``nn.Linear``), and B is zero, so ``dW = 0`` and the adapted model starts exactly at the
base model. rsLoRA (Kalajdzievski 2023) scales by ``1/sqrt(r)`` so that the update's size
does not shrink as ``r`` grows. Only ``r (in + out)`` numbers per layer are trained.

``merge`` folds ``dW`` into W (inference then costs nothing extra) and ``unmerge``
takes it out again; :func:`merge_lora` merges every adapter and puts plain
``nn.Linear`` layers back.

:func:`apply_lora` wraps the layers chosen by :class:`LoraConfig` in place and freezes
everything else, except ``modules_to_save`` (trained in full and saved with the adapter,
such as a new classification head) and, with ``bias``, the biases. The wrapped layers
keep their parameter names (``layers.0.attn.q_proj.weight``); the adapter adds
``...q_proj.lora_A.weight`` and ``...q_proj.lora_B.weight``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["LoraConfig", "LoraLinear", "apply_lora", "merge_lora", "lora_state_dict",
           "trainable_parameters", "lora_parameter_names"]

# PEFT's default targets per architecture (peft.utils.constants), in lmforge's names:
# BERT/RoBERTa query+value, DeBERTa-v2 query_proj+value_proj, GPT-2 c_attn (lmforge's
# fused qkv; for the llama style it stands in for q_proj+v_proj), T5 q+v.
_DEFAULT_TARGETS = {"BertModel": ["q_proj", "v_proj"], "DebertaV2": ["query", "value"],
                    "GPT": ["qkv"], "T5": ["q", "v"], "Transformer": ["q_proj", "v_proj"]}
# The output layers that "all-linear" leaves alone: the last projection of every head.
# (PEFT drops the output embeddings and, for SEQ_CLS, the classifier.)
_OUTPUT_LAYERS = ("lm_head", "mlm.decoder", "nsp.linear", "classifier.linear", "qa.linear")
_BIAS = ("none", "all", "lora_only")


@dataclass
class LoraConfig:
    """Which layers get LoRA and how (PEFT's ``LoraConfig`` fields, lmforge names).

    ``target_modules``: ``"default"`` (PEFT's choice for the architecture),
    ``"all-linear"`` (every ``nn.Linear`` but the output layer of each head), a list of
    module names (a name matches itself and every module whose name ends in ``.name``),
    or any other string, a regular expression that must match a whole module name.
    ``modules_to_save``: modules trained in full and saved with the adapter; ``None``
    means the task head, as PEFT's task types do (``classifier``; with RoBERTa's
    sequence classifier also ``pooler``, its dense layer; ``qa``). ``bias``: ``none``,
    ``all`` (every bias is trained and saved) or ``lora_only`` (those of adapted layers).
    """

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    target_modules: list[str] | str = "default"
    use_rslora: bool = False
    modules_to_save: list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"LoraConfig.r must be an integer >= 1 (got {self.r!r})")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) \
                or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ConfigError(f"LoraConfig.alpha must be a number > 0 (got {self.alpha!r})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) \
                or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoraConfig.dropout must be in [0, 1) (got {self.dropout!r})")
        if self.bias not in _BIAS:
            raise ConfigError(f"LoraConfig.bias must be one of {', '.join(_BIAS)} "
                              f"(got {self.bias!r})")
        t = self.target_modules
        if isinstance(t, str):
            if t not in ("default", "all-linear"):
                try:
                    re.compile(t)
                except re.error as e:
                    raise ConfigError(f"LoraConfig.target_modules: {t!r} is not 'default', "
                                      f"'all-linear' or a valid regular expression ({e})"
                                      ) from None
        elif not isinstance(t, list | tuple) or not t or not all(
                isinstance(x, str) and x for x in t):
            raise ConfigError("LoraConfig.target_modules must be 'default', 'all-linear', a "
                              f"regular expression or a non-empty list of names (got {t!r})")
        m = self.modules_to_save
        if m is not None and (not isinstance(m, list | tuple)
                              or not all(isinstance(x, str) and x for x in m)):
            raise ConfigError(f"LoraConfig.modules_to_save must be a list of module names "
                              f"(got {m!r})")

    @property
    def scaling(self) -> float:
        """``s = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


class LoraLinear(nn.Module):
    """``y = x W^T + b + s * B(A(dropout(x)))`` around the weights of a base ``nn.Linear``.

    The base layer's ``weight`` and ``bias`` parameters are taken over as they are (same
    tensors, same names, frozen by :func:`apply_lora`); ``lora_A`` (in -> r) starts
    Kaiming-uniform with ``a = sqrt(5)``, ``lora_B`` (r -> out) at zero. With
    ``dropout = 0`` the input is used as it is (no copy).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoraLinear wraps an nn.Linear, got {type(base).__name__}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in)
        self.register_parameter("bias", base.bias)  # (out,) or None
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(self.in_features, r, bias=False, **kw)  # A: (r, in)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, **kw)  # B: (out, r)
        self.r, self.alpha, self.dropout, self.use_rslora = r, alpha, float(dropout), use_rslora
        self.scaling = alpha / (math.sqrt(r) if use_rslora else r)
        self.merged = False
        self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (Kaiming, a = sqrt 5), B = 0."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.merged:
            return y
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout, training=True)
        # through the modules, so that hooks on them (Opacus' per-example gradients) run
        h = self.lora_B(self.lora_A(x))  # (..., r) -> out
        return y.add_(h, alpha=self.scaling)

    def delta_weight(self) -> Tensor:
        """``dW = s B A``, shape (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """``W <- W + dW``; the forward pass is then the base layer's alone."""
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W <- W - dW``: undo :meth:`merge` (to within rounding)."""
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"r={self.r}, alpha={self.alpha}, dropout={self.dropout}, "
                f"scaling={self.scaling:g}, merged={self.merged}")


# --------------------------------------------------------------------- choosing modules

def _matches(name: str, key: str) -> bool:
    """PEFT's list rule: ``key`` names the module itself or any module ending in ``.key``."""
    return name == key or name.endswith("." + key)


def _under(name: str, modules: Iterable[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _family_default(model: nn.Module, table: dict[str, list[str]]) -> list[str] | None:
    """The entry of ``table`` for the first module of ``model`` (itself first) whose class,
    or a base class, is listed; this also finds an lmforge model wrapped in another."""
    for m in model.modules():
        for cls in type(m).__mro__:
            if cls.__name__ in table:
                return table[cls.__name__]
    return None


def _default_modules_to_save(model: nn.Module) -> list[str]:
    """The task head PEFT's task types train in full (SEQ_CLS/TOKEN_CLS: the classifier,
    QUESTION_ANS: the span head). RoBERTa's sequence head is ``dense -> tanh -> out_proj``,
    which lmforge holds as ``pooler`` + ``classifier``, both new at fine-tuning time."""
    cfg = getattr(model, "config", None)
    head = getattr(cfg, "head", None)
    if head == "seq_cls":
        return ["classifier", "pooler"] if getattr(cfg, "flavor", None) == "roberta" \
            else ["classifier"]
    return {"token_cls": ["classifier"], "qa": ["qa"]}.get(head, [])


def _resolve_modules_to_save(model: nn.Module, cfg: LoraConfig) -> list[str]:
    names = [n for n, _ in model.named_modules() if n]
    keys = _default_modules_to_save(model) if cfg.modules_to_save is None \
        else list(cfg.modules_to_save)
    found: list[str] = []
    for key in keys:
        hits = [n for n in names if _matches(n, key)]
        if not hits:
            top = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"LoraConfig.modules_to_save: {key!r} matches no module; "
                              f"top-level modules: {', '.join(top)}")
        found += hits
    return sorted({n for n in found  # the outermost of nested matches
                   if not any(n != m and n.startswith(m + ".") for m in found)})


def _resolve_targets(model: nn.Module, cfg: LoraConfig, save: list[str]) -> list[str]:
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    t = cfg.target_modules
    explicit = t not in ("default", "all-linear")
    if t == "all-linear":
        chosen = [n for n in linears if not any(_matches(n, o) for o in _OUTPUT_LAYERS)]
    else:
        keys = _family_default(model, _DEFAULT_TARGETS) if t == "default" else t
        if keys is None:
            raise ConfigError(f"LoraConfig.target_modules: no default is known for "
                              f"{type(model).__name__}; name the layers or use 'all-linear'")
        if isinstance(keys, str):  # a regular expression over whole names
            chosen = [n for n in linears if re.fullmatch(keys, n)]
            missing = [] if chosen else [keys]
        else:
            chosen = [n for n in linears if any(_matches(n, k) for k in keys)]
            missing = [k for k in keys if not any(_matches(n, k) for n in linears)]
        if missing:
            shown = ", ".join(linears[:8]) + (", ..." if len(linears) > 8 else "")
            raise ConfigError(f"LoraConfig.target_modules: {missing[0]!r} matches no Linear "
                              f"layer; Linear layers ({len(linears)}): {shown}")
    clash = [n for n in chosen if _under(n, save)]
    if clash and explicit:
        raise ConfigError(f"LoraConfig: {clash[0]} is both a LoRA target and in "
                          "modules_to_save (trained in full); choose one")
    chosen = [n for n in chosen if n not in clash]
    if not chosen:
        raise ConfigError("LoraConfig.target_modules selects no layer outside "
                          "modules_to_save")
    shared = _tied_parameters(model)
    for n in chosen:
        if id(model.get_submodule(n).weight) in shared:
            raise ConfigError(f"LoraConfig.target_modules: {n} shares its weight with another "
                              "module (tied embeddings); LoRA on a tied weight is not supported")
    return chosen


def _tied_parameters(model: nn.Module) -> set[int]:
    """``id`` of every parameter that appears under more than one name (tied weights)."""
    seen: set[int] = set()
    tied: set[int] = set()
    for _n, p in model.named_parameters(remove_duplicate=False):
        (tied if id(p) in seen else seen).add(id(p))
    return tied


# ------------------------------------------------------------------------- public API

def _lora_config_of(model: nn.Module) -> LoraConfig:
    cfg = getattr(model, "lora_config", None)
    if not isinstance(cfg, LoraConfig):
        raise ConfigError("the model has no LoRA adapters; call apply_lora(model, cfg) first")
    return cfg


def lora_parameter_names(model: nn.Module) -> list[str]:
    """Names (``state_dict`` keys) of everything the adapter holds: every ``lora_A`` /
    ``lora_B`` weight, the tensors of ``modules_to_save`` and the biases ``bias`` asks
    for. These are exactly the tensors :func:`apply_lora` leaves trainable."""
    cfg = _lora_config_of(model)
    targets = set(cfg.target_modules)
    out = []
    for name in model.state_dict():
        module, _, leaf = name.rpartition(".")
        if module.rpartition(".")[2] in ("lora_A", "lora_B") and \
                module.rpartition(".")[0] in targets:
            out.append(name)
        elif _under(name, cfg.modules_to_save):
            out.append(name)
        elif (cfg.bias == "all" and "bias" in leaf) or \
                (cfg.bias == "lora_only" and leaf == "bias" and module in targets):
            out.append(name)
    return out


def apply_lora(model: nn.Module, cfg: LoraConfig) -> list[str]:
    """Wrap the layers ``cfg`` selects in :class:`LoraLinear`, in place; freeze every
    other parameter except ``modules_to_save`` (and the biases ``cfg.bias`` names).

    Returns the names of the wrapped modules. The resolved config (full module names) is
    kept as ``model.lora_config``. Mistakes (no matching layer, a layer both targeted and
    saved, a tied weight, LoRA applied twice) raise :class:`ConfigError`.
    """
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise ConfigError("the model already has LoRA adapters; merge_lora(model) first")
    save = _resolve_modules_to_save(model, cfg)
    targets = _resolve_targets(model, cfg, save)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        layer = LoraLinear(base, cfg.r, cfg.alpha, cfg.dropout, cfg.use_rslora)
        setattr(parent, child, layer.train(base.training))
    model.lora_config = dataclasses.replace(cfg, target_modules=targets, modules_to_save=save)
    keep = set(lora_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)
    return targets


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its layer (``W <- W + s B A``) and put back plain
    ``nn.Linear`` layers holding the same parameters: the model computes the same
    function (to fp32 rounding) with no LoRA left. ``requires_grad`` flags are left as
    they are. Returns ``model``."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLinear):
            continue
        module.merge()
        with torch.device("meta"):  # no allocation: the parameters are moved over below
            plain = nn.Linear(module.in_features, module.out_features,
                              bias=module.bias is not None)
        plain.weight = module.weight
        if module.bias is not None:
            plain.bias = module.bias
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, plain)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter alone, by lmforge names: LoRA weights, ``modules_to_save`` tensors and
    the trained biases (detached; the tensors are the model's own)."""
    state = model.state_dict()
    return {n: state[n].detach() for n in lora_parameter_names(model)}


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, tied weights counted once."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
