"""The knobs of text generation, validated up front."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import torch

from ..errors import ConfigError

GREEDY_BELOW = 1e-5  # as vLLM's _SAMPLING_EPS
_AUTOCAST = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}


# (field, accepted types, may be None): checked before the range checks below
_FIELD_KINDS = (("max_new_tokens", Integral, False), ("temperature", Real, False),
                ("top_k", Integral, True), ("top_p", Real, True),
                ("repetition_penalty", Real, False), ("seed", Integral, True),
                ("batch_size", Integral, False), ("min_new_tokens", Integral, False),
                ("no_repeat_ngram_size", Integral, False), ("num_beams", Integral, False),
                ("alpha", Real, False), ("presence_penalty", Real, False),
                ("frequency_penalty", Real, False))


def _logit_bias(bias) -> dict[int, float]:
    """``bias`` as ``{token id: float}``, each id >= 0 and each value in [-100, 100]."""
    if not isinstance(bias, dict):
        raise ConfigError(f"logit_bias must map token ids to numbers, got {bias!r}")
    out = {}
    for k, v in bias.items():
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 0:
            raise ConfigError(f"logit_bias: {k!r} is not a token id (an integer >= 0)")
        if not isinstance(v, Real) or isinstance(v, bool) or not -100 <= v <= 100:
            raise ConfigError(f"logit_bias: the bias of token {k} must be a number in "
                              f"[-100, 100], got {v!r}")
        out[int(k)] = float(v)
    return out


@dataclass
class GenerationConfig:
    """How to pick each next token and when to stop.

    ``temperature=0`` (or below ``1e-5``) is greedy decoding; otherwise tokens are sampled from
    ``softmax(logits / temperature)`` after the repetition penalty, then cut to the
    ``top_k`` most likely and to the nucleus of mass ``top_p``. ``stop`` strings end a
    row as soon as its decoded completion contains one (the text is cut just before it).
    ``presence_penalty`` and ``frequency_penalty`` are OpenAI's: with :math:`c_v` the
    count of token :math:`v` among the *new* tokens (the prompt not counted),
    :math:`z_v ← z_v - c_v f - [c_v > 0] p`, applied after the repetition
    penalty; both lie in [-2, 2] as in the OpenAI API (0 = off).
    ``logit_bias`` is OpenAI's: a map from token id to a number in [-100, 100] added to
    that token's logit after the penalties (-100 in effect bans the token, 100 in effect
    forces it).
    ``seed`` seeds a private ``torch.Generator`` (the global RNG is left alone).
    ``use_cache=False`` recomputes the whole sequence every step (slow; for testing).
    ``autocast`` runs the model under ``torch.autocast`` in ``"bf16"`` or ``"fp16"``
    (logits are still processed in fp32). ``batch_size`` caps how many prompts share one
    forward pass.

    Constraints (rules in :mod:`lmforge.generate.constraints`), applied after the
    repetition penalty and before the temperature, as Hugging Face orders them:
    ``min_new_tokens`` bans ``eos`` until that many new tokens exist;
    ``no_repeat_ngram_size = n`` bans every token that would repeat an n-gram of the
    prompt plus the new tokens; ``bad_words`` never appear (each as any token sequence
    that spells it); every entry of ``force_words`` appears in the output, a list entry
    meaning "any one of these words".

    ``num_beams > 1`` or any ``force_words`` switch to beam search
    (:mod:`lmforge.generate.beam`): deterministic, so ``temperature``, ``top_k``,
    ``top_p`` and ``seed`` do not apply, and the result is known only at the end (no
    streaming). ``alpha`` is the GNMT length penalty of :mod:`lmforge.models.beam`,
    ``score = log P / ((5 + |Y|) / 6) ** alpha``, with the translation models' default
    0.6 (0 = raw log-probability, which favours short outputs).

    ``json_schema`` (a JSON schema as a dict; ``{"type": "object"}`` for any JSON object)
    makes the output a JSON document that the schema accepts, by grammar-constrained
    decoding (:mod:`lmforge.generate.structured`, the ``serve`` extra): tokens the
    grammar forbids are masked after the bans and before the temperature, and the row
    ends at ``eos`` once the document is complete. It samples one token per step (no
    beam search) and decides where the output ends (no ``min_new_tokens``).
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
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    bad_words: list[str] = field(default_factory=list)
    force_words: list[str | list[str]] = field(default_factory=list)
    num_beams: int = 1
    alpha: float = 0.6
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    json_schema: dict | None = None

    def __post_init__(self) -> None:
        self.stop = _string_list("stop", self.stop)
        self.bad_words = _string_list("bad_words", self.bad_words)
        if isinstance(self.force_words, str):
            self.force_words = [self.force_words]
        if not isinstance(self.force_words, (list, tuple)):
            raise ConfigError(f"force_words must be a list of words or of lists of words, "
                              f"got {self.force_words!r}")
        self.force_words = [w if isinstance(w, str) else _string_list("force_words", w)
                            for w in self.force_words]
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
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise ConfigError(f"{name} must be in [-2, 2] (0 = off), "
                                  f"got {getattr(self, name)}")
        if any(not s for s in self.stop):
            raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        for name, words in (("bad_words", self.bad_words), ("force_words", self.force_words)):
            for entry in words:
                if isinstance(entry, list) and not entry:
                    raise ConfigError(f"{name}: a list of alternatives must not be empty")
                for word in [entry] if isinstance(entry, str) else entry:
                    if not word.strip():
                        raise ConfigError(f"{name}: a word must have a non-space character, "
                                          f"got {word!r}")
        if self.autocast is not None and self.autocast not in _AUTOCAST:
            raise ConfigError(f"autocast must be one of {sorted(_AUTOCAST)} or None, "
                              f"got {self.autocast!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(f"min_new_tokens must be in [0, max_new_tokens="
                              f"{self.max_new_tokens}], got {self.min_new_tokens}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"no_repeat_ngram_size must be >= 0 (0 = off), "
                              f"got {self.no_repeat_ngram_size}")
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1 (1 = no beam search), "
                              f"got {self.num_beams}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a finite number >= 0, got {self.alpha}")
        self.logit_bias = _logit_bias(self.logit_bias)
        if self.json_schema is not None:
            self._check_json_schema()

    def _check_json_schema(self) -> None:
        """The schema compiles, and no other rule decides the output's shape or end."""
        from .structured import compile_schema

        compile_schema(self.json_schema)
        if self.beam_search:
            raise ConfigError("json_schema samples one token per step: it cannot be "
                              "combined with num_beams > 1 or force_words")
        if self.min_new_tokens:
            raise ConfigError("json_schema decides where the output ends: it cannot be "
                              "combined with min_new_tokens")

    @property
    def greedy(self) -> bool:
        """Temperatures below ``GREEDY_BELOW`` decode greedily: dividing fp32 logits by
        a smaller one can overflow to inf, and the limit distribution is the argmax."""
        return self.temperature < GREEDY_BELOW

    @property
    def counts_new_tokens(self) -> bool:
        """True when a penalty reads how often each new token occurred."""
        return self.presence_penalty != 0 or self.frequency_penalty != 0

    @property
    def beam_search(self) -> bool:
        """True when decoding runs by beam search (``num_beams > 1`` or ``force_words``)."""
        return self.num_beams > 1 or bool(self.force_words)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST[self.autocast] if self.autocast else None


def _string_list(name: str, value: object) -> list[str]:
    """``value`` as a list of strings (one string becomes a list of one)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return list(value)


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
