"""The search space of ``lmforge tune``: a YAML mapping from dotted recipe fields to
distributions.

::

    train.lr:          {loguniform: [1e-4, 1e-2]}   # log x ~ U(log low, log high)
    head.dropout:      {uniform: [0.0, 0.5]}        # x ~ U(low, high)
    model.n_layer:     {choice: [2, 4, 6]}          # one of the values
    finetune.lora.r:   {int: [4, 32], step: 4}      # low, low + step, ..., high
    train.batch_size:  {int: [8, 64], log: true}    # integers, uniform in log x

A key is any field of the recipe, written as for ``--set`` (``section.field``, deeper for
nested sections). :func:`parse_space` checks the distributions; that each key is a field
of the recipe and that the ends of each range are values it accepts is checked against
the recipe itself (:meth:`lmforge.tune.recipes.TuneRecipe.check_space`). Every mistake
is a one-line :class:`~lmforge.errors.ConfigError`.

The grid sampler enumerates the product of every parameter's values, so it takes only
``choice`` and ``int`` with a ``step``: a continuous range has no grid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

KINDS = ("choice", "int", "uniform", "loguniform")
OPTIONS = {"choice": (), "int": ("step", "log"), "uniform": (), "loguniform": ()}
# YAML 1.1 (PyYAML) reads 1e-4 as a string: a float needs a dot (1.0e-4).
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml_number(x: Any) -> Any:
    """``"1e-4"`` -> ``0.0001``; anything else as it is."""
    return float(x) if isinstance(x, str) and _EXPONENT_FLOAT.fullmatch(x) else x


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Param:
    """One dimension of the space: the dotted field ``name`` and its distribution."""

    name: str
    kind: str                 # choice | int | uniform | loguniform
    choices: tuple = ()       # choice
    low: float = 0.0          # int, uniform, loguniform
    high: float = 0.0
    step: int | None = None   # int: the grid spacing (None: 1, and no grid)
    log: bool = False         # int: uniform in log x

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for an optuna ``trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high,
                                   log=self.kind == "loguniform")

    def probes(self) -> list:
        """The values checked against the recipe: every choice, or both ends."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def grid_values(self) -> list:
        """The values a grid visits; a ConfigError for a range without a grid."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int" and self.step is not None and not self.log:
            return list(range(int(self.low), int(self.high) + 1, self.step))
        what = ("an int range without a step" if self.kind == "int" and not self.log
                else "a log-scale int range" if self.kind == "int"
                else f"a continuous range ({self.kind})")
        raise ConfigError(f"--sampler grid: {self.name} is {what}; a grid takes choice "
                          "lists and int ranges with a step")

    def to_spec(self) -> dict:
        """The YAML form this parameter was written in."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        spec: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            spec["step"] = self.step
        if self.log:
            spec["log"] = True
        return spec


@dataclass(frozen=True)
class Space:
    """The parameters of a search, in file order; ``source`` names where they came from."""

    params: tuple[Param, ...]
    source: str = "search space"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per parameter, drawn by the trial's sampler."""
        return {p.name: p.suggest(trial) for p in self.params}

    def grid(self) -> dict[str, list]:
        """``{name: values}`` for optuna's GridSampler (checks that a grid exists)."""
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def to_spec(self) -> dict[str, dict]:
        return {p.name: p.to_spec() for p in self.params}


def _range(name: str, kind: str, value: Any) -> tuple[Any, Any]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"{name}: {kind} takes [low, high], got {value!r}")
    low, high = (_yaml_number(v) for v in value)
    check = _is_int if kind == "int" else _is_number
    if not (check(low) and check(high)):
        want = "integers" if kind == "int" else "finite numbers"
        raise ConfigError(f"{name}: the ends of a {kind} range must be {want}, got {value!r}")
    return low, high


def parse_param(name: Any, spec: Any) -> Param:
    """One ``name: {kind: ..., options}`` entry of a space file."""
    if not isinstance(name, str) or not all(name.split(".")):
        raise ConfigError(f"{name!r}: a key must be a dotted recipe field such as train.lr")
    kinds = [k for k in (spec if isinstance(spec, dict) else {}) if k in KINDS]
    if len(kinds) != 1:
        raise ConfigError(f"{name}: give one distribution of {', '.join(KINDS)} "
                          f"(got {spec!r})")
    kind = kinds[0]
    extra = [k for k in spec if k != kind and k not in OPTIONS[kind]]
    if extra:
        allowed = ", ".join(OPTIONS[kind]) or "none"
        raise ConfigError(f"{name}: unknown option {extra[0]!r} of {kind} (allowed: "
                          f"{allowed})")
    value = spec[kind]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{name}: choice takes a non-empty list, got {value!r}")
        value = [_yaml_number(v) for v in value]
        bad = [v for v in value if not (v is None or isinstance(v, (str, bool, int, float)))]
        if bad:
            raise ConfigError(f"{name}: choice values must be numbers, strings, booleans or "
                              f"null, got {bad[0]!r}")
        if len({repr(v) for v in value}) != len(value):
            raise ConfigError(f"{name}: choice lists a value twice: {value!r}")
        return Param(name, kind, choices=tuple(value))
    low, high = _range(name, kind, value)
    if kind == "int":
        step, log = spec.get("step"), spec.get("log", False)
        if low > high:
            raise ConfigError(f"{name}: empty range [{low}, {high}] (low is above high)")
        if not isinstance(log, bool):
            raise ConfigError(f"{name}: log must be true or false, got {log!r}")
        if step is not None:
            if not _is_int(step) or step < 1:
                raise ConfigError(f"{name}: step must be a positive integer, got {step!r}")
            if log:
                raise ConfigError(f"{name}: step and log exclude each other")
            if (high - low) % step:
                raise ConfigError(f"{name}: step {step} does not divide the range "
                                  f"[{low}, {high}] (high - low = {high - low})")
        if log and low < 1:
            raise ConfigError(f"{name}: a log-scale int range needs low >= 1, got {low}")
        return Param(name, kind, low=low, high=high, step=step, log=log)
    if not low < high:
        raise ConfigError(f"{name}: empty range [{low}, {high}] (low must be below high)")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{name}: loguniform needs low > 0, got {low}")
    return Param(name, kind, low=float(low), high=float(high))


def parse_space(raw: Any, source: str = "search space") -> Space:
    """A :class:`Space` from the parsed YAML mapping ``raw``."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: expected a mapping of recipe fields to distributions, "
                          "e.g. 'train.lr: {loguniform: [1e-4, 1e-2]}'")
    try:
        return Space(tuple(parse_param(k, v) for k, v in raw.items()), source)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_space(path: str | Path) -> Space:
    """Read and parse a space YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"search space {p} not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"search space {p} is not valid UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"search space {p} is not valid YAML: "
                          f"{str(e).splitlines()[0]}") from None
    return parse_space(raw, str(p))
