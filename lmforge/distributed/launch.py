"""What a run command does differently under torchrun: join the group, let rank 0 write.

:func:`join_run` is called first by ``pretrain`` and ``finetune``: it joins torchrun's
process group when ``train.distributed`` asks for it, refuses a multi-process launch of
a single-process recipe, and turns on ``--resume`` after torchrun has restarted a failed
group (``--max-restarts``) when the run folder holds a checkpoint. Rank 0 then writes
the run folder's files while the other ranks wait at a :func:`~.env.barrier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .env import join_launch, restart_count


def join_run(train: Any, run_dir: str | Path, resume: bool) -> tuple[bool, bool]:
    """``(this process is rank 0 (or alone), resume)`` for a run with train config
    ``train`` in ``run_dir``."""
    from ..train import latest_checkpoint
    from ..train.precision import resolve_device

    env = join_launch(train.distributed, resolve_device(train.device), train.dist_timeout)
    if env is not None and restart_count() > 0 and latest_checkpoint(run_dir) is not None:
        resume = True
    return env is None or env.is_main, resume


def quiet(_message: str) -> None:
    """The log of a rank other than 0: rank 0 reports."""


__all__ = ["join_run", "quiet"]
