"""DQN recipes (``algo: dqn``), read by ``lmforge rl train``::

    algo:    dqn
    run:     name, output folder, seed (the environment, network and exploration seeds
             derive from it)
    env:     gymnasium id, number of parallel copies, keyword arguments for gymnasium.make
    network: hidden sizes, dueling head
    dqn:     the algorithm's hyper-parameters (names as in stable-baselines3)
    eval:    deterministic evaluation episodes during and after training, and whether the
             best evaluated network becomes the policy (:mod:`lmforge.rl.best`)
    log:     metric lines, checkpoints

The defaults are stable-baselines3's DQN defaults; ``dqn-cartpole`` sets rl-zoo's
CartPole-v1 hyper-parameters.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import RECIPE_DIR, RunConfig, apply_overrides, load_yaml, validate_recipe
from ..validation import Section

RL_RECIPES = RECIPE_DIR / "rl"


class EnvConfig(Section):
    id: str = Field("CartPole-v1", description="a gymnasium environment id")
    num_envs: int = Field(1, ge=1, le=256, description="parallel copies stepped together")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="keyword arguments of gymnasium.make")


class NetworkConfig(Section):
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    dueling: bool = Field(False, description="Q = V + A - mean A (Wang et al. 2016)")


class DQNConfig(Section):
    total_steps: int = Field(100_000, ge=1, description="environment transitions")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    buffer_size: int = Field(1_000_000, ge=1)
    learning_starts: int = Field(100, ge=0, description="transitions before learning "
                                 "(actions are uniform until then)")
    gamma: float = Field(0.99, description="discount, in [0, 1]")
    train_freq: int = Field(4, ge=1, description="environment steps between training rounds")
    gradient_steps: int = Field(1, ge=-1, description="updates per round (-1: as many as "
                                "transitions collected in the round)")
    target_update_interval: int = Field(10_000, ge=1, description="environment transitions "
                                        "between target updates (C)")
    tau: float = Field(1.0, gt=0, le=1, description="Polyak coefficient (1: hard copy)")
    exploration_fraction: float = Field(0.1, ge=0, le=1)
    exploration_initial_eps: float = Field(1.0, ge=0, le=1)
    exploration_final_eps: float = Field(0.05, ge=0, le=1)
    double: bool = Field(False, description="Double DQN targets (van Hasselt et al. 2016)")
    n_step: int = Field(1, ge=1, description="n-step returns")
    loss: Literal["huber", "mse"] = "huber"
    max_grad_norm: float | None = Field(10.0, gt=0)
    prioritized: bool = Field(False, description="prioritized replay (Schaul et al. 2016)")
    per_alpha: float = Field(0.6, ge=0, le=1)
    per_beta: float = Field(0.4, ge=0, le=1, description="initial importance exponent, "
                            "annealed to 1")
    per_eps: float = Field(1e-6, gt=0)
    threads: int | None = Field(1, ge=1, description="torch threads (null: torch's default)")

    @model_validator(mode="after")
    def _check(self) -> DQNConfig:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma {self.gamma} is outside [0, 1]")
        if self.buffer_size < self.batch_size:
            raise ValueError(f"buffer_size {self.buffer_size} is smaller than batch_size "
                             f"{self.batch_size}: a batch could not be drawn")
        return self


class EvalConfig(Section):
    episodes: int = Field(20, ge=1, description="deterministic episodes of the final "
                          "evaluation")
    every: int = Field(10_000, ge=0, description="transitions between evaluations during "
                       "training (0: only at the end)")
    during_episodes: int = Field(5, ge=1, description="episodes of each evaluation during "
                                 "training")
    seed: int = Field(10_000, description="seed of the evaluations during training")
    final_seed: int = Field(20_000, description="seed of the final evaluation (other starts "
                            "than the evaluations during training, which keep_best chooses on)")
    keep_best: bool = Field(False, description="save the network of the best evaluation "
                            "during training (or the last, if at least as good) as the policy, "
                            "as stable-baselines3's EvalCallback keeps its best model")


class LogConfig(Section):
    every: int = Field(1000, ge=1, description="transitions between metric lines")
    ckpt_every: int = Field(10_000, ge=0, description="transitions between checkpoints "
                            "(0: only at the end)")
    keep_last: int = Field(1, ge=1)
    progress: bool = True


class DQNRecipe(Section):
    algo: Literal["dqn"] = "dqn"
    run: RunConfig = Field(default_factory=lambda: RunConfig(name="dqn", seed=0))
    env: EnvConfig = Field(default_factory=EnvConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    dqn: DQNConfig = Field(default_factory=DQNConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def load_rl_raw(name_or_path: str, overrides: list[str]) -> dict:
    """The recipe YAML (a path or a built-in name in configs/rl/) with ``--set`` applied."""
    from ..config import resolve_recipe_path

    return apply_overrides(load_yaml(resolve_recipe_path(name_or_path, RL_RECIPES)), overrides)


def build_dqn_recipe(raw: dict) -> DQNRecipe:
    """Validate a recipe and make its environment once (an unknown id, continuous actions or
    bad ``env.kwargs`` are errors before any run folder is written)."""
    recipe = validate_recipe(DQNRecipe, raw)
    from .envs import make_env

    make_env(recipe.env.id, **recipe.env.kwargs).close()
    return recipe

