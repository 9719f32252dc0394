"""Supervised fine-tuning of a chat model (``task: chat``) and its evaluation.

1. **Data**: the world's dialogues (:mod:`lmforge.corpora.tasks.dialogue`, splits and
   ceilings) or chat JSONL files (val: a share of train unless given).
2. **Tokenizer**: a model from scratch gets one trained on the rendered training
   conversations, with the template's special tokens (``<|im_start|>``,
   ``<|im_end|>`` for ChatML); a backbone brings its own, which must have them.
3. **Model**: a GPT from scratch, or the backbone trained in full or with LoRA.
4. **Training**: the loss on the assistant's tokens only (:mod:`lmforge.chat.sft`),
   packed into full blocks or not. The best checkpoint is the one with the highest
   validation factual accuracy (world dialogues) or the lowest validation loss (files).
5. **Evaluation** (world dialogues): every assistant turn of every dialogue is answered
   greedily from the gold conversation before it, and scored by
   :func:`~lmforge.corpora.tasks.dialogue.answer_correct`. Each split reports the
   accuracy overall, on known and unknown facts, and on first and follow-up questions,
   beside its ceiling (1.0) and its closed-book ceiling (the share of answers its
   training dialogues can teach). Files are scored by the loss on the assistant's
   tokens. The chat template is saved in the run folder, where ``lmforge chat RUN``
   finds it. A LoRA run also saves the merged model in ``<run>/model``.

With a key active (:func:`lmforge.privacy.encrypted_io.using_key`) the run's
``results.json`` and ``errors.jsonl`` are written encrypted, as its checkpoints are.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_json, write_text
from ..tasks.finetune import FinetuneResult, fit_and_load_best, scratch_tokenizer, start_run
from .generate import replies, template_variables
from .messages import read_chat_jsonl
from .recipe import ChatRecipe
from .sft import ChatBatches, ChatExample, encode_chat, pack
from .template import (
    DEFAULT_TEMPLATE_TOKENS,
    ChatTemplate,
    read_chat_template,
    save_chat_template,
)


def load_dialogues(recipe: ChatRecipe) -> tuple[dict[str, list[dict]], dict | None]:
    """The splits (records with ``messages``) and the world card (None for files)."""
    d = recipe.data
    if d.world is not None:
        from ..corpora.tasks import render_task_set

        ts = render_task_set("dialogue", seed=recipe.run.seed, sizes=d.world_sizes or None,
                             langs=d.langs)
        return dict(ts.splits), ts.card
    from ..tasks.datasets import hold_out

    train = read_chat_jsonl(d.train)
    if d.val is not None:
        val = read_chat_jsonl(d.val)
    else:
        train, val = hold_out(train, d.val_fraction, recipe.run.seed, d.train,
                              what="conversations")
    splits = {"train": train, "val": val}
    for path in d.test:
        splits[Path(path).stem] = read_chat_jsonl(path)
    return splits, None


def load_template(recipe: ChatRecipe) -> ChatTemplate:
    if recipe.template is None:
        return ChatTemplate.default()
    return read_chat_template(recipe.template)


def _special_tokens(recipe: ChatRecipe) -> list[str]:
    """The tokens the template writes as single special tokens."""
    extra = list(recipe.tokenizer.special_tokens)
    return extra if recipe.template is not None else \
        extra + [t for t in DEFAULT_TEMPLATE_TOKENS if t not in extra]


def build_model(recipe: ChatRecipe, template: ChatTemplate, train: list[dict], run_dir: Path,
                resume: bool) -> tuple[torch.nn.Module, Any]:
    """The GPT and its tokenizer (module docstring, steps 2 and 3)."""
    specials = _special_tokens(recipe)
    if recipe.backbone is not None:
        from ..hub import load_pretrained

        model, tok = load_pretrained(recipe.backbone.path, require_tokenizer=True)
        missing = [t for t in specials if tok.token_to_id(t) not in tok.special_ids]
        if missing:
            raise ConfigError(f"backbone {recipe.backbone.path}: its tokenizer has no special "
                              f"token {', '.join(missing)}, which the chat template writes; "
                              "train the model from scratch (model:) or use a tokenizer "
                              "that has them")
        model.train()
        if recipe.finetune.strategy == "lora":
            from ..nn.lora import LoraConfig, apply_lora

            apply_lora(model, LoraConfig(**recipe.finetune.lora.model_dump()))
        return model, tok
    from ..models.gpt import GPT

    t = recipe.tokenizer
    texts = [template.render(r["messages"], **_default_tokens(t.kind)).text for r in train]
    tok = scratch_tokenizer(t.kind, texts, t.vocab_size, t.min_frequency, run_dir, resume,
                            special_tokens=specials)
    torch.manual_seed(recipe.run.seed)
    return GPT(dataclasses.replace(recipe.model, vocab_size=tok.vocab_size)), tok


def _default_tokens(kind: str) -> dict[str, str]:
    """The special tokens a template may read, before the tokenizer that will have them
    is trained on the rendered text."""
    from ..tokenize.tokenizer import DEFAULT_SPECIAL_TOKENS

    return {f"{role}_token": tok for role, tok in DEFAULT_SPECIAL_TOKENS[kind].items()
            if role in ("bos", "eos", "pad", "unk")}


def encode_split(template: ChatTemplate, tok: Any, records: list[dict], max_length: int,
                 where: str) -> list[ChatExample]:
    variables = template_variables(tok)
    out = []
    for r in records:
        line = f"{where}:line {r['_line']}" if "_line" in r else f"{where} {r.get('id', '')}"
        out.append(encode_chat(template, tok, r["messages"], max_length, line, **variables))
    return out


# ----------------------------------------------------------------------------- evaluation

def turn_prompts(records: list[dict]) -> list[tuple[dict, int, list[dict]]]:
    """``(record, i, conversation up to the i-th assistant message)`` for every assistant
    message of every record."""
    out = []
    for r in records:
        k = 0
        for j, m in enumerate(r["messages"]):
            if m["role"] == "assistant":
                out.append((r, k, r["messages"][:j]))
                k += 1
    return out


def factual_accuracy(model: Any, tok: Any, template: ChatTemplate, records: list[dict],
                     recipe: ChatRecipe) -> dict:
    """Answer every turn of the world's dialogues and score it (module docstring)."""
    from ..corpora.tasks.dialogue import answer_correct

    was_training = model.training
    model.eval()
    items = turn_prompts(records)
    got = replies(model, tok, [conv for _, _, conv in items], template,
                  temperature=0, max_new_tokens=recipe.decode.max_new_tokens,
                  batch_size=recipe.decode.batch_size)
    groups: dict[str, list[bool]] = {"all": [], "known": [], "unknown": [], "first": [],
                                      "follow_up": []}
    errors = []
    for (r, i, _), reply in zip(items, got, strict=True):
        turn = r["turns"][i]
        ok = answer_correct(reply, turn, r["lang"], r["subject"], recipe.run.seed)
        for g in ("all", "known" if turn["known"] else "unknown",
                  "first" if i == 0 else "follow_up"):
            groups[g].append(ok)
        if not ok:
            errors.append({"id": r["id"], "turn": i, "fact": turn["fact"],
                           "gold": [m for m in r["messages"] if m["role"] == "assistant"][i]
                           ["content"], "reply": reply})
    model.train(was_training)
    acc = {f"accuracy_{g}" if g != "all" else "accuracy":
           round(sum(v) / len(v), 4) if v else None for g, v in groups.items()}
    return {"n": len(items), **acc, "errors": errors}


@torch.no_grad()
def assistant_loss(model: Any, batches: ChatBatches) -> float:
    """The mean cross-entropy over the assistant's tokens of ``batches``."""
    from ..train.objectives import CausalLMObjective

    was_training = model.training
    model.eval()
    objective, total, n = CausalLMObjective(), 0.0, 0
    for b in batches.eval_batches():
        loss, _, count = objective(model, b)
        total += float(loss) * int(count)
        n += int(count)
    model.train(was_training)
    return total / max(1, n)


# ----------------------------------------------------------------------------- the run

def finetune_chat(recipe: ChatRecipe, *, resume: bool = False, show_progress: bool = True,
                  log: Callable[[str], None] = print) -> FinetuneResult:
    """Train, select on validation, evaluate every split; see the module docstring."""
    from ..train import Trainer

    run_dir = start_run(recipe, resume)
    template = load_template(recipe)
    splits, card = load_dialogues(recipe)
    if not splits.get("train"):
        raise DataError("chat: no training conversations")
    model, tok = build_model(recipe, template, splits["train"], run_dir, resume)
    save_chat_template(run_dir, template)
    d = recipe.data
    where = d.train or "dialogue"
    train_ex = encode_split(template, tok, splits["train"], d.max_length, where)
    if d.packing:
        train_ex = pack(train_ex, d.max_length - 1)
    val_ex = encode_split(template, tok, splits["val"], d.max_length, d.val or where)
    bs = recipe.train.batch_size
    train_src, val_src = ChatBatches(train_ex, bs, tok.pad_id), ChatBatches(val_ex, bs,
                                                                           tok.pad_id)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"chat: {len(train_ex)} training {'blocks' if d.packing else 'conversations'}; "
        f"GPT with {total:,} parameters, {trainable:,} trainable")
    evaluators = []
    update: dict = {}
    if card is not None:
        val_dialogues = splits["val"][:d.val_dialogues]

        def validation(m) -> dict:
            ev = factual_accuracy(m, tok, template, val_dialogues, recipe)
            return {"val_accuracy": ev["accuracy"]}

        evaluators.append(validation)
        update = {"best_metric": "val_accuracy", "best_mode": "max"}
    cfg = recipe.train.model_copy(update=update)
    provenance = {"recipe": recipe.to_dict(), "task": "chat", "parameters": total,
                  "trainable_parameters": trainable}
    trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=recipe.run.seed,
                      evaluators=evaluators, tokenizer=tok, provenance=provenance,
                      resume=resume, show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    results = evaluate_chat(model, tok, template, splits, card, recipe, run_dir)
    results.update(best_checkpoint=str(best), parameters=total, trainable=trainable)
    if recipe.finetune.strategy == "lora":
        results["merged_model"] = str(save_merged(model, tok, template, run_dir / "model"))
        log(f"LoRA merged into {run_dir / 'model'}: lmforge chat {run_dir / 'model'}")
    write_json(run_dir / "results.json", results)
    log(results_table(results))
    return FinetuneResult(run_dir, None, results, train_result, (trainable, total))


def save_merged(model: Any, tok: Any, template: ChatTemplate, folder: Path) -> Path:
    """Fold the LoRA adapters into the weights (``W <- W + s B A``) and save a plain model
    folder with its tokenizer and chat template."""
    from ..nn.lora import merge_lora

    merge_lora(model).save_pretrained(folder)
    tok.save(folder)
    save_chat_template(folder, template)
    return folder


def evaluate_chat(model: Any, tok: Any, template: ChatTemplate, splits: dict[str, list[dict]],
                  card: dict | None, recipe: ChatRecipe, run_dir: Path) -> dict:
    """Every split but train: factual accuracy beside the ceilings (world dialogues), or
    the assistant-token loss (files); the errors of ``test`` go to ``errors.jsonl``."""
    out: dict = {"splits": {}}
    for name, records in splits.items():
        if name == "train" or not records:
            continue
        if card is None:
            ex = encode_split(template, tok, records, recipe.data.max_length, name)
            loss = assistant_loss(model, ChatBatches(ex, recipe.train.batch_size, tok.pad_id))
            out["splits"][name] = {"n": len(records), "assistant_loss": round(loss, 4)}
            continue
        ev = factual_accuracy(model, tok, template, records, recipe)
        errors = ev.pop("errors")
        out["splits"][name] = {**ev, "ceiling": card["ceiling"][name],
                               "closed_book_ceiling": card["closed_book_ceiling"][name]}
        if name == "test":
            write_text(run_dir / "errors.jsonl", "".join(
                json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
    return out


def results_table(results: dict) -> str:
    rows = ["split          n   accuracy  known  unknown  follow-up  ceiling  closed-book"]
    for name, s in results["splits"].items():
        if "accuracy" not in s:
            rows.append(f"{name:<12} {s['n']:>4}   assistant loss {s['assistant_loss']:.4f}")
            continue
        rows.append(f"{name:<12} {s['n']:>5}   {s['accuracy']:.4f}  "
                    f"{s['accuracy_known'] or 0:.3f}  {s['accuracy_unknown'] or 0:.3f}    "
                    f"{s['accuracy_follow_up'] or 0:.3f}     {s['ceiling']:.3f}    "
                    f"{s['closed_book_ceiling']:.3f}")
    return "\n".join(rows)


def evaluate_chat_files(run: str | Path, paths: list[str], out: str | None = None,
                        log: Callable[[str], None] = print) -> dict[str, dict]:
    """``lmforge evaluate`` on a chat run: each chat JSONL file is scored by factual
    accuracy when its records are the world's dialogues (they carry ``turns`` and
    ``subject``), else by the loss on the assistant's tokens. ``out``: a folder per file
    with ``metrics.json`` (and ``errors.jsonl``), encrypted when a key is active."""
    from ..config import load_yaml
    from ..hub import load_pretrained, resolve_model_dir
    from .recipe import build_chat_recipe
    from .template import load_chat_template

    run = Path(run)
    run_dir = run if (run / "config.yaml").is_file() else run.parent.parent
    recipe = build_chat_recipe(load_yaml(run_dir / "config.yaml"))
    model, tok = load_pretrained(run, require_tokenizer=True)
    template = (load_chat_template(resolve_model_dir(run)) or load_chat_template(run_dir)
                or ChatTemplate.default())
    report = {}
    for path in paths:
        records = read_chat_jsonl(path)
        errors: list[dict] = []
        if all("turns" in r and "subject" in r for r in records):
            ev = factual_accuracy(model, tok, template, records, recipe)
            errors = ev.pop("errors")
            log(f"{path}: {ev['n']} answers, factual accuracy {ev['accuracy']:.4f} (known "
                f"{ev['accuracy_known'] or 0:.3f}, unknown {ev['accuracy_unknown'] or 0:.3f}, "
                f"follow-up {ev['accuracy_follow_up'] or 0:.3f})")
        else:
            ex = encode_split(template, tok, records, recipe.data.max_length, path)
            ev = {"n": len(records), "assistant_loss": round(assistant_loss(
                model, ChatBatches(ex, recipe.train.batch_size, tok.pad_id)), 4)}
            log(f"{path}: {ev['n']} conversations, loss on the assistant's tokens "
                f"{ev['assistant_loss']:.4f}")
        report[path] = ev
        if out is not None:
            folder = Path(out) / Path(path).stem
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "metrics.json", ev)
            write_text(folder / "errors.jsonl", "".join(
                json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
    return report
