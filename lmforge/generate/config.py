"""The knobs of text generation, validated up front."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from numbers import Integral, Real

import torch

from ..errors import ConfigError

_AUTOCAST = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}


# (field, accepted types, may be None): checked before the range checks below
_FIELD_KINDS = (("max_new_tokens", Integral, False), ("temperature", Real, False),
                ("top_k", Integral, True), ("top_p", Real, True),
                ("repetition_penalty", Real, False), ("seed", Integral, True),
                ("batch_size", Integral, False))


@dataclass
class GenerationConfig:
    """How to pick each next token and when to stop.

    ``temperature=0`` is greedy decoding; otherwise tokens are sampled from
    ``softmax(logits / temperature)`` after the repetition penalty, then cut to the
    ``top_k`` most likely and to the nucleus of mass ``top_p``. ``stop`` strings end a
    row as soon as its decoded completion contains one (the text is cut just before it).
    ``seed`` seeds a private ``torch.Generator`` (the global RNG is left alone).
    ``use_cache=False`` recomputes the whole sequence every step (slow; for testing).
    ``autocast`` runs the model under ``torch.autocast`` in ``"bf16"`` or ``"fp16"``
    (logits are still processed in fp32). ``batch_size`` caps how many prompts share one
    forward pass.
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    use_cache: bool = True
    autocast: str | None = None
    batch_size: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        for name, kinds, optional in _FIELD_KINDS:
            value = getattr(self, name)
            if (value is None and optional) or (
                    isinstance(value, kinds) and not isinstance(value, bool)):
                continue
            want = "an integer" if kinds is Integral else "a number"
            raise ConfigError(f"{name} must be {want}{' or None' if optional else ''}, "
                              f"got {value!r}")
        if self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1] or None, got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ConfigError(f"repetition_penalty must be > 0 (1 = off), "
                              f"got {self.repetition_penalty}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        if self.autocast is not None and self.autocast not in _AUTOCAST:
            raise ConfigError(f"autocast must be one of {sorted(_AUTOCAST)} or None, "
                              f"got {self.autocast!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST[self.autocast] if self.autocast else None


def resolve_config(config: GenerationConfig | None, overrides: dict) -> GenerationConfig:
    """``config`` (default: ``GenerationConfig()``) with ``overrides`` applied, validated."""
    config = config or GenerationConfig()
    names = {f.name for f in dataclasses.fields(GenerationConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown generation option(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides) if overrides else config


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` in ``dtype``, or a no-op when ``dtype`` is None."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
