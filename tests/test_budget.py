"""Fitting a run to a time budget (``lmforge.train.budget``) and the WSD schedule.

References: the schedule's formulas evaluated by hand, a fake clock for the planner's
arithmetic, and a run with ``max_steps`` fixed from the start, which a planned run must
equal bit for bit.
"""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.errors import ConfigError, TrainingError
from lmforge.train.budget import StepPlanner, latest_plan_step
from lmforge.train.optim import LRSchedule


def test_wsd_schedule_by_hand():
    s = LRSchedule(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100, kind="wsd",
                   decay_fraction=0.2)
    assert s.decay_steps == 20
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)  # warmup
    assert s(10) == s(50) == s(80) == 1.0                              # stable
    assert s(81) == pytest.approx(0.1 + 0.9 * 19 / 20)                 # decay
    assert s(99) == pytest.approx(0.1 + 0.9 / 20) and s(100) == pytest.approx(0.1)
    shorter = LRSchedule(1.0, 0.1, 10, 60, "wsd", 0.2)
    assert all(s(k) == shorter(k) for k in range(49))  # same until the shorter one decays
    assert s(49) != shorter(49)


@pytest.mark.parametrize("kind, latest", [("cosine", 60), ("linear", 60), ("wsd", 960),
                                          ("constant", 1199)])
def test_latest_plan_step(kind, latest):
    assert latest_plan_step(LRSchedule(3e-3, 1e-4, 60, 1200, kind)) == latest


class FakeTrainer:
    """What the planner uses of a Trainer: cfg, schedule, step, can_replan, replan."""

    def __init__(self, schedule: LRSchedule):
        from lmforge.train.config import TrainConfig

        self.schedule = schedule
        self.cfg = TrainConfig(max_steps=schedule.max_steps,
                               warmup_steps=schedule.warmup_steps, schedule=schedule.kind)
        self.step = 0
        self.replanned: tuple | None = None

    def can_replan(self, max_steps: int) -> bool:
        import dataclasses

        other = dataclasses.replace(self.schedule, max_steps=max_steps)
        return max_steps > self.step and all(
            self.schedule(k) == other(k) for k in range(self.step + 1))

    def replan(self, max_steps: int, **fields) -> None:
        assert self.can_replan(max_steps)
        self.replanned = (max_steps, fields)


def _drive(monkeypatch, trainer, planner, step_seconds, until):
    clock = {"t": 1000.0}
    monkeypatch.setattr("lmforge.train.budget.time.monotonic", lambda: clock["t"])
    planner.deadline = clock["t"] + planner.deadline  # given as seconds from now
    planner.on_train_start(trainer)
    for k in range(1, until + 1):
        clock["t"] += step_seconds
        trainer.step = k
        planner.on_step_end(k, {})
        if planner.plan is not None:
            return k
    return None


def test_planner_fits_the_budget_after_a_long_measurement(monkeypatch):
    """WSD: the plan comes when 40% of the budget is spent, and fills the rest."""
    trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 60, 1200, "wsd"))
    planner = StepPlanner(100.0, tokens_per_step=2048, safety=1.1, reserve_steps=40)
    k = _drive(monkeypatch, trainer, planner, 0.5, 1200)
    assert k == 80  # 40 s of 100 at 0.5 s a step
    want = k + math.floor(60.0 / (1.1 * 0.5) - 40)
    assert planner.plan.steps == want == trainer.replanned[0]
    assert trainer.replanned[1] == {"eval_every": math.ceil(want / 2),
                                    "ckpt_every": math.ceil(want / 2)}
    assert planner.plan.tokens_per_second == pytest.approx(2048 / 0.5)
    assert "plan: 149 steps" in planner.plan.line()


def test_planner_keeps_the_recipe_length_on_a_fast_machine(monkeypatch):
    trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 60, 1200, "wsd"))
    planner = StepPlanner(1000.0, tokens_per_step=2048)
    k = _drive(monkeypatch, trainer, planner, 0.01, 1200)
    assert k == 960  # the last step before the full-length decay starts
    assert planner.plan.steps == 1200 and "(the recipe's full length)" in planner.plan.line()


def test_planner_never_shortens_below_the_rates_already_used(monkeypatch):
    """A machine that slowed down: the budget alone would end the run at once, but the
    WSD rates used so far allow no length under k / (1 - decay_fraction)."""
    trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 60, 1200, "wsd"))
    planner = StepPlanner(100.0, tokens_per_step=2048, reserve_steps=1000)
    k = _drive(monkeypatch, trainer, planner, 0.5, 1200)
    steps = planner.plan.steps
    assert steps > k and trainer.can_replan(steps) and not trainer.can_replan(steps - 1)


def test_planner_with_cosine_plans_at_the_end_of_the_warmup(monkeypatch):
    trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 60, 1200, "cosine"))
    planner = StepPlanner(1000.0, tokens_per_step=2048)
    assert _drive(monkeypatch, trainer, planner, 0.1, 1200) == 60


def test_planner_when_the_warmup_fills_the_run(monkeypatch):
    """warmup >= max_steps: the plan comes before the last step and never extends it."""
    for kind in ("wsd", "cosine"):
        trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 2000, 2000, kind))
        planner = StepPlanner(1e6, tokens_per_step=1)
        k = _drive(monkeypatch, trainer, planner, 0.01, 2000)
        assert k == 1999 and planner.plan.steps == 2000


def test_planner_needs_enough_steps_before_the_length_matters():
    trainer = FakeTrainer(LRSchedule(3e-3, 1e-4, 10, 1200, "cosine"))
    with pytest.raises(ConfigError, match="warmup_steps >= 30"):
        StepPlanner(100.0, tokens_per_step=1).on_train_start(trainer)


def _tiny_run(tmp_path, name, max_steps, callbacks=()):
    from lmforge.config import load_recipe, resolve_recipe_path
    from lmforge.pretrain import pretrain

    recipe = load_recipe(resolve_recipe_path("quickstart"), [
        f"run.out_dir={tmp_path / name}", "data.world_train_sentences=2000",
        "data.world_eval_sentences=20", "tokenizer.vocab_size=300", "model.n_layer=1",
        "model.d_model=32", "model.n_head=2", "model.n_kv_head=2",
        f"train.max_steps={max_steps}", "train.batch_size=4", "train.block_size=16",
        "train.warmup_steps=30", "train.schedule=wsd", "train.eval_every=1000",
        "train.ckpt_every=1000", "train.eval_batches=2", "train.device=cpu",
        "train.precision=fp32", "train.threads=1", "sample.prompts=[]"])
    return pretrain(recipe, show_progress=False, log=lambda _m: None, callbacks=callbacks)


def test_a_planned_run_equals_the_run_of_its_planned_length(tmp_path):
    threads = torch.get_num_threads()
    try:
        import time

        planner = StepPlanner(time.monotonic() + 3.0, tokens_per_step=64, reserve_steps=5)
        planned = _tiny_run(tmp_path, "planned", 400, (planner,))
        steps = planner.plan.steps
        assert planned.train.steps == steps <= 400
        fixed = _tiny_run(tmp_path, "fixed", steps)
    finally:
        torch.set_num_threads(threads)
    a, b = planned.model.state_dict(), fixed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_replan_refuses_to_change_rates_already_used(tmp_path):
    seen = {}

    class Replanner:
        def on_train_start(self, trainer):
            self.trainer = trainer

        def on_step_end(self, step, metrics):
            if step != 40:
                return
            t = self.trainer
            with pytest.raises(TrainingError, match="learning rate"):
                t.replan(45)  # its decay (the last 9 steps) would have begun at step 36
            with pytest.raises(TrainingError, match="learning rate"):
                t.replan(40)  # not after the steps taken
            with pytest.raises(TrainingError, match="cannot change"):
                t.replan(200, lr=1.0)
            t.replan(60)  # decays from step 48: nothing used so far changes
            seen["max_steps"] = t.cfg.max_steps

    result = _tiny_run(tmp_path, "replan", 400, (Replanner(),))
    assert seen["max_steps"] == 60 and result.train.steps == 60
