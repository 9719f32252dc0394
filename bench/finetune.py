"""Fine-tuning speed: lmforge's Trainer against ``transformers.Trainer`` and ``peft``.

One BERT-shaped sequence classifier (3 labels, random weights from a
``transformers.BertConfig``) is trained two ways in this one process, fp32, on random
token ids of one fixed length (no padding), with the same batch size, optimizer (fused
AdamW, lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on matrices, constant
learning rate, gradient clipping at 1.0), dropout 0.1 and a metrics line every 10
steps:

- **full fine-tuning**. Peer: ``transformers.BertForSequenceClassification`` trained by
  ``transformers.Trainer`` (no evaluation, no saving, ``report_to=[]``, no tqdm,
  ``use_cpu``, ``dataloader_num_workers=0``). lmforge: the same weights converted with
  :func:`lmforge.hf.bert.load` and copied into :class:`lmforge.tasks.model.TaskModel`
  (``encoder: bert``, ``pooling: pooler``) the way
  :func:`lmforge.tasks.finetune.build_task_model` copies a backbone, trained by
  :class:`lmforge.train.Trainer` with :class:`lmforge.tasks.evaluation.TaskObjective`
  on :class:`lmforge.tasks.encode.TaskBatches` (what ``lmforge finetune`` runs);
- **LoRA** (r 8, alpha 16, dropout 0, on the query and value projections; the
  classifier trained in full). Peer: ``peft.get_peft_model(..., LoraConfig(task_type=
  "SEQ_CLS"))`` trained by ``transformers.Trainer``. lmforge: the TaskModel with
  :func:`lmforge.nn.lora.apply_lora` on its encoder (PEFT's default targets, as
  ``finetune.strategy: lora`` does).

Before training the two models' logits on one batch (eval mode) are compared: they must
agree to 1e-4, so both rows train the same function.

**What is timed.** Each trainer runs in its own thread and calls a hook after every
optimizer update (``on_step_end``); the threads take turns, one update each in a fixed
order (:class:`Lockstep`), so that load from other jobs on a shared machine hits every
implementation alike (on 2 busy cores a step's time swings 10x within a minute). A
step is timed from the moment its trainer gets the turn back to its next
``on_step_end``: everything the trainer does between two updates (drawing and
collating the batch, forward, backward, clipping, AdamW, logging), nothing before the
first update (``transformers.Trainer`` builds its dataloader and optimizer) or after
the last (lmforge writes a final checkpoint). The first ``--warmup`` updates of every
run are not counted (allocator, oneDNN primitives, AdamW state). Samples per second
are batch size / the median step over all rounds; each round starts every trainer
afresh on the same model, the order of the rows reversed every other round. The
ratio of the mean steps is reported beside it (``ratio_mean_step``).

Sizes (sequence length 128, batch 16, vocabulary 8000, 512 positions):
``--quick`` 4 layers, 256 hidden, 4 heads, 1024 feed-forward, 2 rounds of 3 + 8 steps
(about a minute on 2 cores); the default the same model, 3 rounds of 3 + 20 steps (a
few minutes); ``--full`` the BERT-base shape (12 layers, 768 hidden, 12 heads, 3072
feed-forward), 2 rounds of 2 + 4 steps (10-15 minutes: a step takes 10-20 s on 2
cores). ``--budget`` seconds (default 150 with ``--quick``, 900, 1200 with ``--full``):
after the first round no new round starts once it is spent.

``--profile`` first runs ``torch.profiler`` over 4 updates of each trainer (after the
warm-up, one trainer after the other) and prints the self CPU time per update by op
group, so the step budgets can be compared op by op.

Run ``python bench/finetune.py [--quick | --full]``. Prints a table headed by the
machine (CPU, ISA, torch threads: torch's default unless ``--threads``), then one JSON
object per figure (``samples_per_s_full``, ``samples_per_s_lora``; target ratio 1.2).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from _common import Budget, emit, machine_line

VOCAB, MAX_POS, SEQ, BATCH, LR = 8000, 512, 128, 16, 1e-4
LABELS = ["neg", "neu", "pos"]
SHAPES = {"small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4,
                        intermediate_size=1024),
          "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                       intermediate_size=3072)}
LORA = dict(r=8, alpha=16)  # peft: lora_alpha
TARGET = 1.2


# ----------------------------------------------------------------- models and data

def hf_config(shape: str):
    from transformers import BertConfig

    return BertConfig(vocab_size=VOCAB, max_position_embeddings=MAX_POS,
                      num_labels=len(LABELS), **SHAPES[shape])


def build_pair(shape: str, seed: int = 0):
    """``(transformers BertForSequenceClassification, lmforge TaskModel)`` holding the
    same weights: the HF state dict through :func:`lmforge.hf.bert.load`, the encoder
    copied into the task model as ``build_task_model`` copies a backbone, the classifier
    copied by hand (HF: ``classifier``; lmforge: the task model's own ``classifier``)."""
    from transformers import BertForSequenceClassification

    from lmforge.hf import bert as hf_bert
    from lmforge.tasks.model import TaskModel, task_config_from

    torch.manual_seed(seed)
    cfg = hf_config(shape)
    hf = BertForSequenceClassification(cfg)
    state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    lm = hf_bert.load(cfg.to_dict(), state)  # head seq_cls, with the pooler
    model = TaskModel(task_config_from("classify", LABELS, "bert", lm.config,
                                       pooling="pooler"))
    own = model.encoder.state_dict()
    model.encoder.load_state_dict({k: v for k, v in lm.state_dict().items() if k in own},
                                  strict=True)
    model.classifier.load_state_dict(lm.classifier.linear.state_dict())
    return hf, model


def random_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of ``SEQ`` random token ids (``[CLS]``-like id 1 first) and labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (n, SEQ), generator=g)
    ids[:, 0] = 1
    return ids, torch.randint(0, len(LABELS), (n,), generator=g)


@torch.no_grad()
def max_logit_diff(hf, model, ids: torch.Tensor) -> float:
    """Largest |logit difference| of the two models on ``ids`` (eval mode: no dropout)."""
    hf.eval()
    model.eval()
    mask = torch.ones_like(ids)
    ours = model({"input_ids": ids, "attention_mask": mask})
    theirs = hf(input_ids=ids, attention_mask=mask).logits
    hf.train()
    model.train()
    return float((ours - theirs).abs().max())


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------- the two trainers

class _Rows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor, labels: torch.Tensor):
        self.ids, self.labels = ids, labels
        self.mask = torch.ones_like(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.labels[i]}


def train_hf(model, data: tuple[torch.Tensor, torch.Tensor], n_steps: int, out: Path,
             on_step: Callable[[int], None]) -> None:
    """``transformers.Trainer`` for ``n_steps``; ``on_step(step)`` after each update."""
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    class Hook(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            on_step(state.global_step)

    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=n_steps,
        learning_rate=LR, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999,
        adam_epsilon=1e-8, max_grad_norm=1.0, lr_scheduler_type="constant",
        warmup_steps=0, eval_strategy="no", save_strategy="no", logging_strategy="steps",
        logging_steps=10, report_to=[], disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, dataloader_pin_memory=False,
        remove_unused_columns=False, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(*data), callbacks=[Hook()])
    trainer.remove_callback(PrinterCallback)  # the log lines would go to stdout
    trainer.train()


def train_lmforge(model, data: tuple[torch.Tensor, torch.Tensor], n_steps: int, out: Path,
                  on_step: Callable[[int], None]) -> None:
    """:class:`lmforge.train.Trainer` for ``n_steps`` as ``lmforge finetune`` runs it;
    ``on_step(step)`` after each update."""
    from lmforge.tasks.encode import Encoded, TaskBatches
    from lmforge.tasks.evaluation import TaskObjective
    from lmforge.train import Trainer
    from lmforge.train.config import TrainConfig

    class Hook:
        def on_step_end(self, step: int, metrics: dict) -> None:
            on_step(step)

    ids, labels = data
    examples = [Encoded(row.tolist(), None, int(y)) for row, y in zip(ids, labels,
                                                                        strict=True)]
    cfg = TrainConfig(precision="fp32", device="cpu", max_steps=n_steps, batch_size=BATCH,
                      lr=LR, min_lr=LR, warmup_steps=0, schedule="constant",
                      weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=1.0,
                      log_every=10, eval_every=10**9, ckpt_every=10**9)
    trainer = Trainer(model, cfg, TaskBatches(examples, 0, "classify", BATCH), None, out,
                      seed=0, objective=TaskObjective("classify"), callbacks=[Hook()],
                      show_progress=False)
    trainer.fit()  # ends with a checkpoint, after the last update


# ----------------------------------------------------------------- measurement

@dataclasses.dataclass
class Row:
    """One implementation of a figure: its model and how to train it."""

    name: str
    model: torch.nn.Module
    train: Callable[..., None]
    steps: list[float] = dataclasses.field(default_factory=list)

    def samples_per_s(self) -> float:
        return BATCH / statistics.median(self.steps)


class Lockstep:
    """Trainers in threads that take turns, one optimizer update each in a fixed order,
    so that load from other jobs on a shared machine hits them all alike.

    Trainer ``i`` runs only while it holds the turn. A step is timed from the moment its
    trainer gets the turn back (its ``on_step_end`` hook returns) to its next
    ``on_step_end``: all the trainer does between two updates. Setup before the first
    step and the work after the last (lmforge's final checkpoint) run in the trainer's
    own turn too, so they never overlap another trainer's steps.
    """

    def __init__(self, n: int):
        self.cond = threading.Condition()
        self.turn, self.done = 0, [False] * n
        self.errors: list[BaseException] = []

    def _wait(self, i: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == i)

    def _pass(self, i: int) -> None:
        with self.cond:
            n = len(self.done)
            nxt = [j % n for j in range(i + 1, i + 1 + n) if not self.done[j % n]]
            self.turn = nxt[0] if nxt else -1
            self.cond.notify_all()

    def run(self, rows: list[Row], data, warmup: int, steps: int) -> None:
        """Train every row ``warmup + steps`` updates; append the timed steps (those
        after the warm-up) to ``row.steps``."""
        total = warmup + steps

        def worker(i: int, row: Row) -> None:
            t0 = 0.0
            times: list[float] = []

            def on_step(step: int) -> None:
                nonlocal t0
                times.append(time.perf_counter() - t0)
                if step < total:  # the last update keeps the turn for the teardown
                    self._pass(i)
                    self._wait(i)
                t0 = time.perf_counter()

            self._wait(i)
            try:
                with tempfile.TemporaryDirectory(prefix="lmforge-bench-ft-") as tmp:
                    t0 = time.perf_counter()
                    row.train(row.model, data, total, Path(tmp), on_step)
                if len(times) != total:
                    raise RuntimeError(f"{row.name}: {len(times)} updates, expected {total}")
                row.steps += times[warmup:]
            except BaseException as e:  # reported by the main thread
                self.errors.append(e)
            finally:
                self.done[i] = True
                self._pass(i)

        self.turn, self.done = 0, [False] * len(rows)
        threads = [threading.Thread(target=worker, args=(i, row), daemon=True)
                   for i, row in enumerate(rows)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[0]


def build_rows(shape: str, metrics: tuple[str, ...],
               ids: torch.Tensor) -> dict[str, tuple[Row, Row, float]]:
    """``metric -> (peer row, lmforge row, max |logit difference| before training)``."""
    import peft

    from lmforge.nn.lora import LoraConfig, apply_lora

    out = {}
    for metric in metrics:
        hf, ours = build_pair(shape)
        names = ("transformers.Trainer", "lmforge")
        if metric == "lora":
            hf = peft.get_peft_model(hf, peft.LoraConfig(
                r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                target_modules=["query", "value"], task_type="SEQ_CLS"))
            apply_lora(ours.encoder, LoraConfig(r=LORA["r"], alpha=LORA["alpha"]))
            names = ("peft + transformers.Trainer", "lmforge LoRA")
        out[metric] = (Row(names[0], hf, train_hf), Row(names[1], ours, train_lmforge),
                       max_logit_diff(hf, ours, ids))
    return out


def run_rounds(rows: list[Row], data, warmup: int, steps: int, reps: int,
               budget: Budget) -> int:
    """``reps`` rounds of every row in lockstep, the order of the rows reversed every
    other round; returns the rounds run (after the first, none starts once the budget is
    spent)."""
    rounds = 0
    for r in range(reps):
        if r and budget.spent():
            break
        Lockstep(len(rows)).run(rows if r % 2 == 0 else rows[::-1], data, warmup, steps)
        rounds += 1
    return rounds


# op -> group for the profile summary (first matching prefix wins)
PROFILE_GROUPS = (("aten::addmm", "matmul"), ("aten::mm", "matmul"), ("aten::bmm", "matmul"),
                  ("aten::_scaled_dot_product", "attention (SDPA)"),
                  ("aten::_softmax", "attention (softmax)"), ("aten::gelu", "GELU"),
                  ("aten::native_layer_norm", "layer norm"),
                  ("aten::bernoulli_", "dropout masks"),
                  ("aten::_fused_adamw", "AdamW"), ("aten::linalg_vector_norm", "clipping"),
                  ("aten::_foreach", "clipping"), ("aten::copy_", "copies"),
                  ("aten::embedding", "embeddings"))


def profile_rows(rows: list[Row], data, steps: int, warmup: int) -> None:
    """Self CPU time per op group over ``steps`` updates of each row, after ``warmup``
    untimed ones (``torch.profiler`` with a schedule stepped by the trainers' hooks)."""
    from torch.profiler import ProfilerActivity, profile, schedule

    groups_by_row: dict[str, dict[str, float]] = {}
    for row in rows:
        when = schedule(wait=warmup, warmup=1, active=steps, repeat=1)
        with tempfile.TemporaryDirectory(prefix="lmforge-bench-ft-") as tmp, \
                profile(activities=[ProfilerActivity.CPU], schedule=when) as prof:
            row.train(row.model, data, warmup + steps + 2, Path(tmp), lambda _: prof.step())
        groups: dict[str, float] = {}
        for e in prof.key_averages():
            group = next((g for p, g in PROFILE_GROUPS if e.key.startswith(p)), None)
            if group is None:
                group = "other aten" if e.key.startswith("aten::") else "not aten"
            groups[group] = groups.get(group, 0.0) + e.self_cpu_time_total
        groups_by_row[row.name] = groups
        print(f"\n{row.name}: top ops by self CPU time over {steps} updates:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20,
                                        max_name_column_width=44))
    names = list(groups_by_row)
    keys = sorted({k for g in groups_by_row.values() for k in g},
                  key=lambda k: -max(g.get(k, 0.0) for g in groups_by_row.values()))
    print(f"\nself CPU ms per update ({steps} updates), by op group:")
    print(f"{'group':<24}" + "".join(f"{n:>30}" for n in names))
    for k in [*keys, "total"]:
        print(f"{k:<24}" + "".join(
            f"{(sum(g.values()) if k == 'total' else g.get(k, 0.0)) / steps / 1e3:>30.1f}"
            for g in groups_by_row.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small model, few steps")
    size.add_argument("--full", action="store_true", help="BERT-base shape, few steps")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per run")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run")
    ap.add_argument("--reps", type=int, default=None, help="rounds")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds; after the first round no new round starts once spent "
                         "(default 150 --quick, 900, 1200 --full)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                    "torch's own choice)")
    ap.add_argument("--only", choices=("full", "lora"), default=None, help="one figure")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler over a few full fine-tuning steps of each trainer")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = "base" if args.full else "small"
    warmup, steps, reps = ((2, 4, 2) if args.full else (3, 8, 2) if args.quick
                           else (3, 20, 3))
    warmup = max(1, args.warmup if args.warmup is not None else warmup)
    steps, reps = args.steps or steps, args.reps or reps
    budget_s = args.budget if args.budget is not None else \
        (1200.0 if args.full else 150.0 if args.quick else 900.0)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    t_start = time.perf_counter()

    data = random_data(BATCH * (warmup + steps) * 2)
    pairs = build_rows(shape, ("full", "lora") if args.only is None else (args.only,),
                       data[0][:8])
    for metric, (_, _, diff) in pairs.items():
        print(f"equivalence ({metric}): max |logit difference| before training = "
              f"{diff:.2e} ({'ok' if diff < 1e-4 else 'MISMATCH'})")
        if diff >= 1e-4:
            raise SystemExit("the two models do not compute the same function; not timed")
    rows = [row for peer, ours, _ in pairs.values() for row in (peer, ours)]
    if args.profile:
        profile_rows(rows, data, 4, warmup)

    budget = Budget(budget_s)
    rounds = run_rounds(rows, data, warmup, steps, reps, budget)
    timed_s = time.perf_counter() - budget.start

    s = SHAPES[shape]
    print(machine_line())
    print(f"BERT sequence classifier {s['num_hidden_layers']}L {s['hidden_size']}d "
          f"{s['num_attention_heads']}H ff {s['intermediate_size']}, vocab {VOCAB}, "
          f"{len(LABELS)} labels; fp32, batch {BATCH}, sequence {SEQ}; {rounds} rounds of "
          f"{warmup} untimed + {steps} timed steps per implementation, in lockstep; "
          f"{budget.start - t_start:.0f} s setup, {timed_s:.0f} s rounds")
    print(f"{'figure':<7}{'implementation':<30}{'trainable':>12}{'samples/s':>11}"
          f"{'step median (min-max) s':>27}{'ratio':>8}")
    for metric, (peer, ours, _) in pairs.items():
        for row in (peer, ours):
            print(f"{metric:<7}{row.name:<30}{trainable(row.model):>12,}"
                  f"{row.samples_per_s():>11.2f}{statistics.median(row.steps):>11.3f} "
                  f"({min(row.steps):.3f}-{max(row.steps):.3f})"
                  f"{row.samples_per_s() / peer.samples_per_s():>8.2f}")
    for metric, (peer, ours, diff) in pairs.items():
        ratio = ours.samples_per_s() / peer.samples_per_s()
        emit({"bench": "finetune", "metric": f"samples_per_s_{metric}",
              "lmforge": round(ours.samples_per_s(), 2), "peer": round(peer.samples_per_s(), 2),
              "peer_name": peer.name, "ratio": round(ratio, 3), "target": TARGET,
              "met": ratio >= TARGET,
              "ratio_mean_step": round(statistics.mean(peer.steps)
                                       / statistics.mean(ours.steps), 3),
              "model": shape, "batch": BATCH, "seq": SEQ, "rounds": rounds,
              "steps": len(ours.steps), "max_logit_diff": float(f"{diff:.2e}")})


if __name__ == "__main__":
    main()
