r"""Fit a run's length to a wall-clock budget, reproducibly.

A run's learning rates depend on its length ``max_steps`` only from some step on: cosine
and linear decay right after the warmup, ``schedule: wsd`` (warmup-stable-decay) only in
its final decay (:class:`~lmforge.train.optim.LRSchedule`). Until then, a run is the same
whatever length it will have. :class:`StepPlanner` times the real run's steps and fixes
``max_steps`` (and the evaluation and checkpoint steps) while that still holds:

    plan at step k, the first of:  k >= latest   (the last step the recipe's schedule,
                                                   at its full length, leaves open)
                                   elapsed >= plan_fraction * (deadline - start)
                                   (start: when training starts)
    t_step = (wall time of steps skip+1 .. k) / (k - skip)
    steps  = k + floor((deadline - now) / (safety * t_step) - reserve_steps)
    steps  = min(steps, the recipe's max_steps), raised if needed to the shortest length
             that keeps the learning rates of steps 0..k

With WSD the plan comes after ``plan_fraction`` of the budget, from a long measurement,
so the ``safety`` margin (for a machine that slows down later, as shared CPUs do) can be
small; with cosine it must come at the end of the warmup. ``reserve_steps`` is the time of
the evaluations still to come, in steps (an evaluation costs a number of steps' time that
hardly depends on the machine).

The planned run is bit for bit the run of a recipe with ``max_steps = steps`` (same data,
same learning rates), so a printed plan can be replayed exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Plan:
    steps: int            # the run's max_steps
    cap: int              # the most the recipe asked for
    step_seconds: float   # measured seconds per step
    tokens_per_step: int
    measured_steps: tuple[int, int]  # steps (first, last) that were timed
    seconds_left: float   # to the deadline when the plan was made

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.step_seconds

    def line(self) -> str:
        a, b = self.measured_steps
        capped = " (the recipe's full length)" if self.steps == self.cap else ""
        return (f"plan: {self.steps} steps{capped}, measured {self.tokens_per_second:,.0f} "
                f"tokens/s ({self.step_seconds * 1000:.0f} ms a step over steps {a}-{b}), "
                f"{self.seconds_left:.0f} s left in the budget")


def half_way(steps: int) -> int:
    """``eval_every``/``ckpt_every`` for a run of ``steps``: half way and at the end."""
    return max(1, math.ceil(steps / 2))


def latest_plan_step(schedule: Any) -> int:
    """The last step after which a run of ``schedule`` (at its full length) can still be
    shortened without changing a learning rate already used."""
    if schedule.kind == "wsd":
        return max(schedule.warmup_steps, schedule.max_steps - schedule.decay_steps)
    if schedule.kind == "constant":
        return schedule.max_steps - 1
    return schedule.warmup_steps


class StepPlanner:
    """A trainer callback that sets ``max_steps`` to what fits before ``deadline`` (a
    ``time.monotonic()`` value) and calls ``on_plan(plan)`` once it is fixed (see the
    module doc). ``eval_every`` and ``ckpt_every`` become half the planned length (an
    evaluation half way and at the end)."""

    def __init__(self, deadline: float, *, tokens_per_step: int, skip: int = 10,
                 min_timed: int = 20, plan_fraction: float = 0.4, safety: float = 1.1,
                 reserve_steps: int = 40, on_plan: Callable[[Plan], None] | None = None):
        self.deadline = deadline
        self.tokens_per_step = tokens_per_step
        self.skip, self.min_timed = skip, min_timed
        self.plan_fraction, self.safety = plan_fraction, safety
        self.reserve_steps = reserve_steps
        self.on_plan = on_plan
        self.plan: Plan | None = None
        self._trainer: Any = None
        self._t_start = self._t_skip = 0.0
        self._latest = 0

    def on_train_start(self, trainer: Any) -> None:
        if trainer.step > 0:
            raise ConfigError("a time-budget plan cannot resume a run; give its "
                              "train.max_steps instead")
        self._latest = min(latest_plan_step(trainer.schedule), trainer.cfg.max_steps - 1)
        if self._latest < self.skip + self.min_timed:
            raise ConfigError(f"a time-budget plan times the first steps of the run, whose "
                              f"learning rates must not depend on its length: with "
                              f"train.schedule={trainer.schedule.kind} that needs "
                              f"train.warmup_steps >= {self.skip + self.min_timed}; or fix "
                              "the length with train.max_steps")
        self._trainer = trainer
        self._t_start = time.monotonic()

    def on_step_end(self, step: int, metrics: dict) -> None:
        if self.plan is not None:
            return
        now = time.monotonic()
        if step == self.skip:
            self._t_skip = now
        if step < self.skip + self.min_timed or step >= self._trainer.cfg.max_steps:
            return
        due = now - self._t_start >= self.plan_fraction * (self.deadline - self._t_start)
        if not (due or step >= self._latest):
            return
        trainer = self._trainer
        step_seconds = (now - self._t_skip) / (step - self.skip)
        fit = (self.deadline - now) / (self.safety * step_seconds) - self.reserve_steps
        cap = trainer.cfg.max_steps
        steps = min(cap, step + max(1, math.floor(min(fit, cap))))
        # too short to keep the rates used so far: the shortest length that keeps them
        steps = next((n for n in range(steps, cap) if trainer.can_replan(n)), cap)
        self.plan = Plan(steps, cap, step_seconds, self.tokens_per_step,
                         (self.skip + 1, step), self.deadline - now)
        trainer.replan(steps, eval_every=half_way(steps), ckpt_every=half_way(steps))
        if self.on_plan is not None:
            self.on_plan(self.plan)
