"""Model families, registered by architecture name.

Each family is one file with an ``nn.Module`` and a ``@dataclass`` config. Registering
it here lets recipes (``model: {arch: gpt, ...}``), checkpoints (``config.json`` carries
``arch``) and ``load_pretrained`` find it by name.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError

_REGISTRY: dict[str, tuple[type, type]] = {}


def register_model(arch: str, model_cls: type, config_cls: type) -> None:
    """Make ``arch`` usable in recipes and checkpoints."""
    _REGISTRY[arch] = (model_cls, config_cls)


def _ensure_builtin() -> None:
    from . import bert, deberta, gpt, ngram_model, rnn, t5, transformer  # noqa: F401  (self-registering)


def model_config_class(arch: str) -> type:
    _ensure_builtin()
    if not isinstance(arch, str) or arch not in _REGISTRY:
        raise ConfigError(f"model.arch: unknown architecture {arch!r}; "
                          f"allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[arch][1]


def model_class(arch: str) -> type:
    model_config_class(arch)
    return _REGISTRY[arch][0]


def arch_of(config: object) -> str:
    _ensure_builtin()
    for arch, (_m, c) in _REGISTRY.items():
        if type(config) is c:
            return arch
    raise ConfigError(f"no registered architecture uses {type(config).__name__}")


def build_model(config: object):
    """Instantiate the registered model for a config dataclass instance."""
    assert dataclasses.is_dataclass(config)
    return model_class(arch_of(config))(config)
