"""The recipe a study tunes: found by name or path, loaded with a trial's parameters, run.

A pretraining recipe (``lmforge pretrain``: ``lmforge/configs/*.yaml``) or a fine-tuning
recipe (``lmforge finetune``: ``lmforge/configs/finetune/*.yaml``; a YAML file with a
``backbone:`` or ``task:`` section). A trial's recipe is the base recipe with the user's
``--set`` overrides, then the trial's parameters, then its run folder, applied exactly as
``--set`` overrides are, so a tuned field is validated like any other.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..config import RECIPE_DIR, builtin_recipes, load_yaml
from ..errors import ConfigError
from .space import Space


@dataclass(frozen=True)
class TuneRecipe:
    """A base recipe file, its kind, and the ``--set`` overrides every trial starts from."""

    path: Path
    kind: Literal["pretrain", "finetune"]
    sets: tuple[str, ...] = ()

    def load(self, params: dict[str, Any] | None = None, out_dir: Path | None = None) -> Any:
        """The validated recipe with ``params`` (dotted field -> value) applied and, when
        given, ``run.out_dir`` set to ``out_dir``."""
        overrides = list(self.sets)
        overrides += [f"{k}={json.dumps(v)}" for k, v in (params or {}).items()]
        if out_dir is not None:
            overrides.append(f"run.out_dir={json.dumps(str(out_dir))}")
        if self.kind == "pretrain":
            from ..config import load_recipe

            return load_recipe(self.path, overrides)
        from ..tasks.config import load_finetune_recipe

        return load_finetune_recipe(str(self.path), overrides)

    def check_space(self, space: Space) -> None:
        """Each parameter names a field of this recipe that accepts both ends of its range
        (every value of a choice); else a one-line ConfigError naming the space file."""
        base = self.load()
        for p in space.params:
            check_field(base, p.name, space.source)
            for value in p.probes():
                try:
                    self.load({p.name: value})
                except ConfigError as e:
                    raise ConfigError(f"{space.source}: {p.name}={value!r}: {e}") from None

    def runner(self, recipe: Any) -> Callable:
        """The function that trains ``recipe``: ``fn(recipe, resume=, show_progress=, log=)``
        and, where the trainer's hooks reach it, ``callbacks=``."""
        if self.kind == "pretrain":
            from ..pretrain import pretrain

            return pretrain
        from ..tasks.runner import finetune_runner

        return finetune_runner(recipe)

    def takes_callbacks(self, recipe: Any) -> bool:
        """Whether this recipe's runner passes callbacks to its trainer (pruning needs
        them; the generation, chat, control and code runners do not take them)."""
        return "callbacks" in inspect.signature(self.runner(recipe)).parameters

    def run(self, recipe: Any, callbacks: Sequence = (),
            log: Callable[[str], None] = lambda _m: None) -> Path:
        """Train ``recipe`` into its run folder (no progress bars); returns the folder."""
        run = self.runner(recipe)
        extra = {"callbacks": tuple(callbacks)} if self.takes_callbacks(recipe) else {}
        return run(recipe, show_progress=False, log=log, **extra).run_dir


def _fields(node: Any) -> list[str] | None:
    """The field names of a recipe section (pydantic) or model config (dataclass); None
    for a free-form mapping (``backbone.encoder_config``), which takes any key."""
    if isinstance(node, BaseModel):
        return list(type(node).model_fields)
    if dataclasses.is_dataclass(node):
        return [f.name for f in dataclasses.fields(node)]
    return None if isinstance(node, dict) else []


def check_field(recipe: Any, key: str, source: str) -> None:
    """``key`` (``train.lr``, ``model.n_layer``) is a field of the validated ``recipe``;
    else a one-line ConfigError naming the section's fields."""
    node: Any = recipe
    parts = key.split(".")
    for i, part in enumerate(parts):
        section = ".".join(parts[:i]) or "the recipe"
        fields = _fields(node)
        if fields is None:  # a free-form mapping: any key (the run checks the values)
            return
        if part not in fields:
            what = "a value, not a section" if not fields else "unknown field"
            hint = difflib.get_close_matches(part, fields, n=1)
            msg = f"{source}: {key}: {section} is {what}" if not fields else \
                f"{source}: {key}: {what}"
            if hint:
                msg += f" (did you mean {hint[0]!r}?)"
            if fields:
                msg += f"; {section} has {', '.join(fields)}"
            raise ConfigError(msg)
        node = getattr(node, part)


def resolve_tune_recipe(name_or_path: str, sets: Sequence[str] = ()) -> TuneRecipe:
    """A built-in recipe name (``gpt-world``, ``classify-topic``) or a YAML path; its kind
    is the folder of the built-in, or for a file whether it has a ``backbone:`` or
    ``task:`` section (fine-tuning) or not (pretraining)."""
    from ..tasks.config import FINETUNE_DIR, builtin_finetune_recipes

    p = Path(name_or_path)
    if p.is_file():
        raw = load_yaml(p)
        kind = "finetune" if "backbone" in raw or "task" in raw else "pretrain"
        return TuneRecipe(p, kind, tuple(sets))
    if p.suffix == "" and not p.is_dir():
        for folder, kind in ((RECIPE_DIR, "pretrain"), (FINETUNE_DIR, "finetune")):
            if (folder / f"{name_or_path}.yaml").is_file():
                return TuneRecipe(folder / f"{name_or_path}.yaml", kind, tuple(sets))
    raise ConfigError(f"recipe {name_or_path} not found (built-in pretraining recipes: "
                      f"{', '.join(builtin_recipes())}; fine-tuning recipes: "
                      f"{', '.join(builtin_finetune_recipes())})")
