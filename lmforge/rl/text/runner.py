"""``train_text_rl`` and ``evaluate_text_run``: the round loop, its run folder and resume.

A round samples ``episodes_per_round`` episodes from the current policy (the sampling seed
is ``seed·1_000_003 + round``, so a resumed run draws what an uninterrupted one would) and
hands them to the learner (:class:`~.qlearn.SoftDQN` or :class:`~.reinforce.Reinforce`).
With ``reward: bleu`` the model is a translation run and each episode starts from a
training source sentence drawn with the same seed (:mod:`.translation`); with
``top_k_actions`` the episodes, targets and figures are on the reference's top-k sets.

Run folder::

    OUT/config.yaml          the resolved recipe
    OUT/metrics.jsonl        one line per round (reward, KL, loss, ...)
    OUT/reward.png           the reward curve
    OUT/results.json         before/after figures (:func:`~.metrics.evaluate_policy`)
    OUT/checkpoints/step_N/  the policy as an ordinary model folder (``lmforge generate
                             OUT`` samples the learned policy; with top_k_actions only
                             approximately, see docs/rl-text.md) + optimizer.pt with
                             the learner's state (target network, replay,
                             baseline): written atomically; ``resume`` continues exactly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from ...errors import CheckpointError, ConfigError
from ...io import atomic_write_json, atomic_write_text
from ...train.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    save_checkpoint,
)
from ...train.metrics_log import MetricsLog, read_metrics, truncate_after
from ...train.plots import new_figure, save_figure
from ..checkpoint import start_run
from .metrics import evaluate_policy
from .recipe import TextRLRecipe, build_text_recipe
from .rewards import Reward, grammar_reward, sentiment_reward
from .rollout import action_log_probs, collect, log_probs
from .translation import TranslationTask, load_translation_run

EVAL_SEED = 10_000_019


def _check_exists(path: str) -> None:
    """A CheckpointError for a missing model, saying how to make a default one."""
    p = Path(path)
    if p.exists():
        return
    hint = ""
    if p == Path("runs/quickstart"):
        hint = " (make it with `make quickstart` or `lmforge quickstart`)"
    elif p.parent == Path("runs") and p.name.startswith("translate-"):
        hint = f" (make it with `lmforge finetune {p.name}`)"
    raise CheckpointError(f"model {path} does not exist{hint}")


def load_reference(path: str):
    """``(model, tokenizer)`` of the pretrained GPT, or a CheckpointError saying how to
    make the default one."""
    from ...hub import load_pretrained

    _check_exists(path)
    model, tok = load_pretrained(path, require_tokenizer=True)
    if getattr(model.config, "n_layer", None) is None or not hasattr(model, "lm_head"):
        raise CheckpointError(f"{path} is not a GPT language model")
    if tok.bos_id is None or tok.eos_id is None:
        raise CheckpointError(f"{path}: the tokenizer needs bos and eos tokens")
    return model, tok


def load_task(recipe: TextRLRecipe) -> tuple[object, object, TranslationTask | None]:
    """``(reference, tokenizer, task)``: a translation run and its pairs for ``reward:
    bleu`` (task), else the GPT (task None); the wrong kind of model is a ConfigError."""
    from ...tasks.seq2seq_predictor import seq2seq_task_of

    _check_exists(recipe.model)
    translation = seq2seq_task_of(recipe.model) == "translate"
    if recipe.reward == "bleu":
        if not translation:
            raise ConfigError(f"reward: bleu needs a translation run as model (e.g. `lmforge "
                              f"finetune translate-transformer-en-de`); {recipe.model} is not")
        return load_translation_run(recipe.model)
    if translation:
        raise ConfigError(f"reward: {recipe.reward} scores unconditional text; "
                          f"{recipe.model} is a translation run: use reward: bleu")
    return (*load_reference(recipe.model), None)


def make_reward(recipe: TextRLRecipe) -> Reward:
    if recipe.reward == "sentiment":
        return sentiment_reward(recipe.sentiment_model, recipe.sentiment_target)
    return grammar_reward


def _learner(recipe: TextRLRecipe, policy, ref, tok):
    if recipe.algo == "text-dqn":
        from .qlearn import SoftDQN

        return SoftDQN(policy, ref, tok, recipe.dqn, recipe.beta, recipe.lr, recipe.grad_clip,
                       recipe.seed, recipe.top_k_actions)
    from .reinforce import Reinforce

    return Reinforce(policy, recipe.reinforce, recipe.beta, recipe.lr, recipe.grad_clip)


def plot_reward(records: list[dict], path: Path, title: str) -> None:
    """The mean score per round (and the running KL) as a PNG."""
    fig, ax = new_figure()
    rounds = [r["step"] for r in records]
    ax.plot(rounds, [r["reward"] for r in records], label="mean score R")
    ax.set_xlabel("round")
    ax.set_ylabel("score")
    ax2 = ax.twinx()
    ax2.plot(rounds, [r["kl_sample"] for r in records], color="tab:red", alpha=0.6,
             label="log π/π_ref per sentence")
    ax2.set_ylabel("nats / sentence")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="lower right")
    save_figure(fig, path)


_FREE_ON_RESUME = ("rounds", "ckpt_every", "eval_samples", "eval_heldout", "eval_split",
                   "threads")


def _resume_point(out: Path, recipe: TextRLRecipe, resume: bool) -> Path | None:
    """The checkpoint to continue from (``resume``, with the same recipe), or None."""
    ckpt = start_run(out, resume)
    if ckpt is None:
        return None
    saved = read_trainer_state(ckpt).get("config", {})
    saved = build_text_recipe(saved).model_dump() if saved else {}  # later fields' defaults
    now = recipe.model_dump()
    changed = [k for k in now if k not in _FREE_ON_RESUME and saved.get(k) != now[k]]
    if changed:
        raise ConfigError(f"--resume: {', '.join(changed)} differ from the run's checkpoint; "
                          "resume with the same recipe")
    return ckpt


def train_text_rl(recipe: TextRLRecipe, out: Path, resume: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """Train ``recipe`` into ``out``; returns the results (also in ``results.json``)."""
    from tqdm import tqdm

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    out = Path(out)
    ref, tok, task = load_task(recipe)
    limit = getattr(ref.config, "max_seq_len", None)
    if limit and recipe.max_new_tokens + 1 > limit:
        raise ConfigError(f"max_new_tokens must be at most {limit - 1} "
                          f"(the model's max_seq_len - 1), got {recipe.max_new_tokens}")
    if task is not None:
        task.split(recipe.eval_split)  # an unknown split fails now, not after training
    policy = load_reference(recipe.model)[0] if task is None else copy.deepcopy(ref)
    reward = make_reward(recipe) if task is None else None
    learner = _learner(recipe, policy, ref, tok)
    start, elapsed = 0, 0.0
    ckpt = _resume_point(out, recipe, resume)
    if ckpt is not None:
        state, payload = load_checkpoint(ckpt, policy, learner.opt)
        learner.load_state_dict(payload["learner"])
        start, elapsed = int(state["step"]), float(state.get("seconds", 0.0))
        truncate_after(out / "metrics.jsonl", start)
        log(f"resumed {out} at round {start}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    metrics = MetricsLog(out / "metrics.jsonl", fresh=ckpt is None)
    t0 = time.monotonic() - elapsed
    bar = tqdm(range(start, recipe.rounds), initial=start, total=recipe.rounds,
               desc=recipe.algo, disable=None)
    for rnd in bar:
        seed, n = recipe.seed * 1_000_003 + rnd, recipe.episodes_per_round
        r, src = (reward, None) if task is None else task.draw(tok, n, seed)
        ep = collect(policy, ref, tok, r, n, recipe.max_new_tokens, seed,
                     recipe.top_k_actions, src)
        with torch.no_grad():
            policy.eval()
            logp_a = action_log_probs(log_probs(policy, ep.tokens, ep.src, ep.keep),
                                      ep.tokens)
            kl_sample = float(((logp_a - ep.ref_logp) * ep.mask).sum(1).mean())
        rec = {"step": rnd + 1, "reward": float(ep.scores.mean()), "kl_sample": kl_sample,
               "length": float(ep.lengths.float().mean()), **learner.round(ep),
               "time": time.monotonic() - t0}
        metrics.write(rec)
        bar.set_postfix(reward=f"{rec['reward']:.3f}", kl=f"{kl_sample:.2f}")
        if (rnd + 1) % recipe.ckpt_every == 0 or rnd + 1 == recipe.rounds:
            metrics.sync()
            save_checkpoint(checkpoint_path(out, rnd + 1), policy, tokenizer=tok,
                            trainer_state={"step": rnd + 1, "seed": recipe.seed,
                                           "config": recipe.model_dump(),
                                           "seconds": time.monotonic() - t0},
                            optimizer_payload={"optimizer": learner.opt.state_dict(),
                                               "learner": learner.state_dict()},
                            provenance={"rl": {"algo": recipe.algo, "reference": recipe.model,
                                               "reward": recipe.reward, "beta": recipe.beta,
                                               "top_k_actions": recipe.top_k_actions}})
            prune_checkpoints(out, keep_last=1)
    metrics.close()
    seconds = time.monotonic() - t0
    records = read_metrics(out / "metrics.jsonl")
    if records:
        plot_reward(records, out / "reward.png", f"{recipe.algo}: {recipe.reward}")
    results = {"algo": recipe.algo, "rounds": recipe.rounds,
               "episodes": recipe.rounds * recipe.episodes_per_round, "train_seconds": seconds,
               **_before_after(policy, ref, tok, reward, recipe, task)}
    atomic_write_json(out / "results.json", results)
    if task is not None:
        b, a = results["before"], results["after"]
        log(f"{recipe.algo}: {recipe.eval_split} greedy BLEU {b['greedy_bleu']:.2f} -> "
            f"{a['greedy_bleu']:.2f}, sample BLEU {b['sample_bleu']:.2f} -> "
            f"{a['sample_bleu']:.2f}, KL {a['kl']:.2f} nats ({seconds:.0f} s of training)")
        return results
    log(f"{recipe.algo}: grammatical {results['before']['grammatical']:.3f} -> "
        f"{results['after']['grammatical']:.3f}, KL {results['after']['kl']:.2f} nats, "
        f"distinct-2 {results['before']['distinct_2']:.3f} -> "
        f"{results['after']['distinct_2']:.3f} ({seconds:.0f} s of training)")
    return results


def _before_after(policy, ref, tok, reward, recipe: TextRLRecipe,
                  task: TranslationTask | None, samples: int | None = None,
                  seed: int = EVAL_SEED) -> dict:
    n = samples or recipe.eval_samples
    if task is not None:
        args = (tok, recipe.eval_split, n, seed, recipe.max_new_tokens, recipe.top_k_actions)
        return {"before": task.evaluate(ref, ref, *args),
                "after": task.evaluate(policy, ref, *args)}
    args = (tok, reward, n, seed, recipe.max_new_tokens, recipe.eval_heldout,
            recipe.top_k_actions)
    return {"before": evaluate_policy(ref, ref, *args),
            "after": evaluate_policy(policy, ref, *args)}


def evaluate_text_run(run_dir: Path, samples: int = 500, seed: int = EVAL_SEED,
                      split: str | None = None) -> dict:
    """Before/after figures of a finished or interrupted run, from its saved policy (for a
    translation run on ``split``, default the recipe's ``eval_split``)."""
    from ...hub import load_pretrained

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a text RL run folder (no config.yaml)")
    recipe = build_text_recipe(yaml.safe_load((run_dir / "config.yaml").read_text("utf-8")))
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    ref, tok, task = load_task(recipe)
    if split is not None:
        if task is None:
            raise ConfigError("split: only a run on a translation model has splits")
        task.split(split)  # an unknown split is a ConfigError
        recipe = recipe.model_copy(update={"eval_split": split})
    policy, _ = load_pretrained(run_dir)
    reward = make_reward(recipe) if task is None else None
    return _before_after(policy, ref, tok, reward, recipe, task, samples, seed)
