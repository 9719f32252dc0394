"""The ``text-dqn`` / ``text-reinforce`` recipe: validated options with one-line errors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...config import validate_recipe
from ...validation import Section


class DQNSection(Section):
    """Replay, target network and TD-target options of the soft double DQN."""

    buffer_episodes: int = Field(4096, ge=1)
    batch_size: int = Field(32, ge=1)
    updates_per_round: int = Field(4, ge=1)
    learning_starts: int = Field(64, ge=1)
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    n_step: int = Field(8, ge=1)
    double: bool = True
    target_update_every: int = Field(20, ge=1)
    tau: float = Field(1.0, gt=0.0, le=1.0)
    huber_delta: float = Field(1.0, gt=0.0)
    reward_offset: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> DQNSection:
        if self.buffer_episodes < self.batch_size:
            raise ValueError(f"dqn.buffer_episodes ({self.buffer_episodes}) must be at least "
                             f"dqn.batch_size ({self.batch_size})")
        if self.reward_offset and self.gamma < 1.0:
            raise ValueError("dqn.reward_offset needs dqn.gamma=1 (with discounting the shift "
                             "would change the optimal policy)")
        if self.tau >= 1.0 and self.target_update_every == 1:
            raise ValueError("dqn.target_update_every=1 with tau=1 copies the online network "
                             "at every update, which defeats the target network")
        return self


class ReinforceSection(Section):
    baseline_momentum: float = Field(0.9, ge=0.0, lt=1.0)


class TextRLRecipe(Section):
    """RL fine-tuning of a pretrained GPT (or, with ``reward: bleu``, of a translation run)
    on a sequence-level reward with a KL penalty. ``top_k_actions``: the actions at ``s``
    are the reference's ``k`` most likely tokens (None: the whole vocabulary).
    ``eval_split``: the translation split the figures are measured on."""

    algo: Literal["text-dqn", "text-reinforce"]
    model: str = "runs/quickstart"
    reward: Literal["grammar", "sentiment", "bleu"] = "grammar"
    top_k_actions: int | None = Field(None, ge=1)
    eval_split: str = "test_unseen"
    sentiment_model: str = "runs/classify-sentiment"
    sentiment_target: str = "positive"
    seed: int = 0
    beta: float = Field(0.2, gt=0.0)
    max_new_tokens: int = Field(63, ge=1)
    rounds: int = Field(100, ge=1)
    episodes_per_round: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    threads: int | None = Field(1, ge=1)
    ckpt_every: int = Field(25, ge=1)
    eval_samples: int = Field(500, ge=1)
    eval_heldout: int = Field(1000, ge=1)
    dqn: DQNSection = DQNSection()
    reinforce: ReinforceSection = ReinforceSection()


def build_text_recipe(raw: dict) -> TextRLRecipe:
    """Validate a raw recipe dict (overrides applied) into a :class:`TextRLRecipe`."""
    return validate_recipe(TextRLRecipe, raw)
