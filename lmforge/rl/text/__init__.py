"""DQN applied to text generation (issue 17, part 2): the text MDP as a gymnasium
environment (from ``[bos]``, or from a source sentence for a translation run), sequence
rewards (grammar, sentiment, BLEU), optional top-k action sets, a soft (KL-regularised)
Double DQN learner, a REINFORCE baseline, the metrics and the recipe. See
docs/rl-text.md."""

from .recipe import TextRLRecipe, build_text_recipe
from .runner import evaluate_text_run, train_text_rl

__all__ = ["TextRLRecipe", "build_text_recipe", "evaluate_text_run", "train_text_rl"]
