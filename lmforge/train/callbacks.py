"""Training callbacks.

A callback is any object with some of these methods (missing ones are skipped)::

    on_train_start(trainer)          # before the first step (after a resume is restored)
    on_step_end(step, metrics)       # after every optimizer update
    on_eval(step, metrics)           # after every evaluation
    on_checkpoint(step, path)        # after a checkpoint folder is in place
    on_train_end(result)             # after the last step, with the TrainResult

``step`` counts completed updates (1 after the first). In ``on_step_end`` the metrics
are ``{"lr": float, "loss": 0-d tensor, "grad_norm": 0-d tensor}`` plus, at logging
steps, the logged floats under ``"log"``; call ``float()`` only when you need a value,
since that waits for the device. A callback may stop the run with
``trainer.request_stop("reason")`` (keep the trainer from ``on_train_start``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Callback:
    """Base class with no-op hooks; subclass and override what you need."""

    def on_train_start(self, trainer: Any) -> None: ...

    def on_step_end(self, step: int, metrics: dict) -> None: ...

    def on_eval(self, step: int, metrics: dict) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_train_end(self, result: Any) -> None: ...


class CallbackList:
    """Calls a hook on every callback that defines it, in order."""

    HOOKS = ("on_train_start", "on_step_end", "on_eval", "on_checkpoint", "on_train_end")

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not any(callable(getattr(cb, h, None)) for h in self.HOOKS):
                raise TypeError(f"{cb!r} is not a callback: it has none of "
                                f"{', '.join(self.HOOKS)}")

    def __call__(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)
