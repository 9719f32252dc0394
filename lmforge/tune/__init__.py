"""Hyper-parameter search over lmforge recipes with Optuna (``lmforge tune``).

- :mod:`.space`: the search space YAML (dotted recipe fields -> distributions);
- :mod:`.recipes`: the base recipe, loaded with a trial's parameters and run;
- :mod:`.study`: the study, the objective, median pruning from the trainer's evaluations,
  parallel workers on a shared storage (SQLite or PostgreSQL) and crash recovery;
- :mod:`.report`: the table of trials, the best parameters and recipe, the plots.

Optuna is the optional ``tune`` extra (``pip install 'lmforge[tune]'``); see
``docs/tune.md``.
"""

from .recipes import TuneRecipe, resolve_tune_recipe
from .space import Param, Space, load_space, parse_space
from .study import TuneSettings, default_direction, run_tune

__all__ = ["Param", "Space", "TuneRecipe", "TuneSettings", "default_direction", "load_space",
           "parse_space", "resolve_tune_recipe", "run_tune"]
