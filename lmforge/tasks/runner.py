"""Which function fine-tunes a recipe: the dispatch of ``lmforge finetune`` (and of the
trials of ``lmforge tune``) over the recipe kinds :func:`~.config.load_finetune_recipe`
returns."""

from __future__ import annotations

from collections.abc import Callable


def finetune_runner(recipe: object) -> Callable:
    """The function that fine-tunes a recipe of :func:`lmforge.tasks.config.load_finetune_recipe`
    (``fn(recipe, resume=, show_progress=, log=)``): chat, control, code, generation
    (seq2seq) or understanding (:func:`lmforge.tasks.finetune.finetune`)."""
    from ..chat.recipe import ChatRecipe
    from ..code.recipe import CodeRecipe
    from ..control.recipe import ControlRecipe
    from .multitask_config import MultitaskRecipe
    from .seq2seq_config import Seq2SeqRecipe

    if isinstance(recipe, ChatRecipe):
        from ..chat.finetune import finetune_chat as run
    elif isinstance(recipe, ControlRecipe):
        from ..control.finetune import finetune_control as run
    elif isinstance(recipe, CodeRecipe):
        from ..code.finetune import finetune_code as run
    elif isinstance(recipe, Seq2SeqRecipe):
        from .seq2seq import finetune_seq2seq as run
    elif isinstance(recipe, MultitaskRecipe):
        from .multitask import finetune_multitask as run
    else:
        from .finetune import finetune as run
    return run
