"""CLI verbs of the understanding tasks: finetune, predict, task evaluation, LoRA merge,
data augmentation and the world's task sets. Thin: each parses options and calls
:mod:`lmforge.tasks` (or :mod:`lmforge.data.augment`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import DataError, LmforgeError
from . import _echo, app, corpus_app, data_app
from .key_options import with_key

lora_app = typer.Typer(help="LoRA adapters: merge them into the weights.", no_args_is_help=True)
app.add_typer(lora_app, name="lora")


@app.command(epilog="Example: lmforge finetune classify-sentiment --set train.max_steps=300 "
                    "--out runs/sentiment")
@with_key
def finetune(
    recipe: Annotated[str, typer.Argument(help="A built-in fine-tuning recipe name or a YAML "
                                          "path.", metavar="RECIPE")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: "
                                                   "section.field=value.")] = None,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<name>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Fine-tune a model on a task (classification, NER, relations, extractive QA,
    translation, summarisation, generative QA, chat, controlled generation, code
    completion) and evaluate it. With a key option the checkpoints are encrypted, and the
    backbone may be an encrypted folder."""
    from ..tasks.config import load_finetune_recipe
    from ..train.checkpoint import check_run_key

    overrides = list(set_ or [])
    if out is not None:
        overrides.append(f"run.out_dir={json.dumps(out)}")
    r = load_finetune_recipe(recipe, overrides)
    check_run_key(r.run.path, r.train.distributed, resume)
    from ..tasks.runner import finetune_runner

    res = finetune_runner(r)(r, resume=resume, show_progress=progress, log=_echo)
    how = f"{res.train.steps} steps ({res.train.stopped_reason})" if res.train else "fitted"
    _echo(f"done: {how}; results in {res.run_dir / 'results.json'}")



def _read_inputs(path: str, fields: tuple[str, ...] = ("text",)) -> list[dict | str]:
    """Non-empty lines of a .txt file, or the records of a .jsonl file, each with one of
    ``fields`` as a string."""
    from ..data.conll import numbered_lines
    from ..data.readers import parse_json_line

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    out: list[dict | str] = []
    for i, line in numbered_lines(p):
        if not line.strip():
            continue
        if p.suffix == ".jsonl":
            rec = parse_json_line(path, i, line)
            if not isinstance(rec, dict) or not any(isinstance(rec.get(f), str)
                                                    for f in fields):
                raise DataError(f"{path}:line {i}: a record needs a "
                                f"{' or '.join(repr(f) for f in fields)} string")
            out.append(rec)
        else:
            out.append(line.rstrip("\r\n"))
    if not out:
        raise DataError(f"{path} holds no inputs")
    return out


@app.command(epilog="Example: lmforge predict runs/sentiment --text '虽然贵,但是很好吃。'")
@with_key
def predict(
    run: Annotated[str, typer.Argument(help="A fine-tuning run or checkpoint folder.",
                                       metavar="RUN")],
    text: Annotated[list[str] | None, typer.Option(help="A text to label (repeatable).")] = None,
    input: Annotated[str | None, typer.Option(help=".txt (a text per line) or .jsonl "
                                              "(records; relations need h and t, "
                                              "extractive QA question and context).")] = None,
    out: Annotated[str | None, typer.Option(help="Write predictions here (.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    task: Annotated[str | None, typer.Option(help="A multi-task run: the task to predict "
                                             "(its name in the recipe).")] = None,
    defend: Annotated[bool, typer.Option(
        help="Pass every input through the adversarial-text defences first (zero-width and "
             "bidi characters, homoglyphs, mixed scripts); the output shows the defended "
             "text, which the offsets refer to.")] = False,
):
    """Labels with probabilities, entity spans with offsets, relations, or answers. With
    a key option the run may be encrypted (it is read in memory) and --out is written
    encrypted."""
    from ..privacy.encrypted_io import write_text
    from ..tasks.multitask_model import task_predictor

    if (text is None) == (input is None):
        raise LmforgeError("give --text (one or more) or --input FILE, not both")
    inputs = list(text) if text is not None else _read_inputs(input, ("text", "question"))
    if defend:
        inputs = [_defended(x) for x in inputs]
    pred = task_predictor(run, task).predict(inputs, batch_size=batch_size)
    lines = [json.dumps({**({"text": x} if isinstance(x, str) else x), **p},
                        ensure_ascii=False) for x, p in zip(inputs, pred, strict=True)]
    if out is not None:
        write_text(out, "\n".join(lines) + "\n")
        _echo(f"wrote {len(lines)} predictions to {out}")
    else:
        for line in lines:
            _echo(line)


def _defended(item: str | dict) -> str | dict:
    """A text, or a record's text fields, through the adversarial-text defences (a text
    they would empty stays as it was)."""
    from ..data.normalize_adversarial import defend

    if isinstance(item, str):
        return defend(item) or item
    return {k: (defend(v) or v) if k in ("text", "question", "context") and isinstance(v, str)
            else v for k, v in item.items()}


def _write_errors(folder: Path, errors: list[dict]) -> None:
    """``folder/errors.jsonl``: one JSON record per line (encrypted when a key is active)."""
    from ..privacy.encrypted_io import write_text

    write_text(folder / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n"
                                                for e in errors))


def evaluate_task(run: str, data: list[str], out: str | None, *, attack: str | None = None,
                  rate: float = 0.1, seed: int = 0, defend: bool = False) -> None:
    """``lmforge evaluate`` on a fine-tuned task model: metrics, confusion, errors; with
    ``attack``, the metrics under that attack beside them (and the drop); with ``defend``,
    every input passes the normalisation defences first
    (:func:`lmforge.eval.attacks.defended`). With a key active the files in ``out``,
    ``confusion.png`` included, are encrypted."""
    from ..eval.attacks import defended, evaluate_under_attack
    from ..privacy.encrypted_io import write_json
    from ..tasks import load_task_model
    from ..tasks.config import TaskDataConfig
    from ..tasks.datasets import read_file

    pred = load_task_model(run)
    if (attack is not None or defend) and pred.task not in ("classify", "tag"):
        raise LmforgeError(f"--attack and --defend apply to classifier and NER runs, not "
                           f"to a {pred.task} run")
    cfg = TaskDataConfig(train="x", scheme=pred.cfg.scheme)
    for path in data:
        records = read_file(cfg, path, pred.task)
        ev = pred.evaluate(defended(records) if defend else records)
        _echo(f"{path}: {ev['n']} records" + (" (defended)" if defend else ""))
        for k, v in ev["metrics"].items():
            _echo(f"  {k:<20} {v:.4f}")
        folder = None if out is None else Path(out) / Path(path).stem
        if attack is not None:
            res = evaluate_under_attack(pred, records, attack, rate, seed, defend,
                                        clean=ev["metrics"])
            _echo(f"  under attack {attack} (rate {rate}, seed {seed}"
                  f"{', defended' if defend else ''}):")
            _echo(f"  {'metric':<20} {'clean':>8} {'attacked':>9} {'drop':>8}")
            for k, v in res["clean"].items():
                _echo(f"  {k:<20} {v:>8.4f} {res['attacked'][k]:>9.4f} {res['drop'][k]:>8.4f}")
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "metrics.json", ev["metrics"])
            _write_errors(folder, ev["errors"])
            if attack is not None:
                write_json(folder / "attack.json", res)
            if "confusion" in ev:
                import numpy as np

                from ..eval.classification import confusion_json, plot_confusion

                mat = np.asarray(ev["confusion"])
                write_json(folder / "confusion.json", confusion_json(mat, ev["labels"]))
                plot_confusion(mat, ev["labels"], folder / "confusion.png", title=path)
            _echo(f"  metrics, confusion matrix{', attack.json' if attack else ''} and "
                  f"errors.jsonl in {folder}")


@lora_app.command("merge", epilog="Example: lmforge lora merge runs/sentiment-lora "
                                  "--out models/sentiment-merged")
@with_key
def lora_merge(
    run: Annotated[str, typer.Argument(help="A LoRA fine-tuning run or checkpoint.",
                                       metavar="RUN")],
    out: Annotated[str, typer.Option(help="Folder for the merged model.")],
):
    """Fold the LoRA adapter into the weights: a plain model, same outputs. With a key
    option an encrypted run is read in memory and the merged model written encrypted."""
    from ..tasks import merge_task_lora

    path = merge_task_lora(run, out)
    _echo(f"merged model written to {path}")


@data_app.command("augment", epilog="Example: lmforge data augment train.jsonl --out "
                                    "train_aug.jsonl --n-aug 4 --alpha 0.1 --lang zh")
def data_augment(
    src: Annotated[str, typer.Argument(help="JSONL: classification or NER records.",
                                       metavar="IN")],
    out: Annotated[str, typer.Option(help="Output JSONL.")],
    n_aug: Annotated[int, typer.Option(help="Augmented copies per record.")] = 4,
    alpha: Annotated[float, typer.Option(help="Share of words changed.")] = 0.1,
    lang: Annotated[str | None, typer.Option(help="en or zh (default: per text).")] = None,
    synonyms: Annotated[str | None, typer.Option(help="A synonym file: one set per line.")]
    = None,
    vectors: Annotated[str | None, typer.Option(help="Word vectors (lmforge run or word2vec "
                                                "file) for nearest-neighbour synonyms.")] = None,
    min_similarity: Annotated[float, typer.Option(help="Similarity floor for --vectors.")]
    = 0.6,
    ops: Annotated[str, typer.Option(help="Operations, comma-separated: sr (synonym "
                                     "replacement), ri (insertion), rs (swap), rd "
                                     "(deletion).")] = "sr,ri,rs,rd",
    seed: Annotated[int, typer.Option()] = 0,
):
    """EDA: synonym replacement, random insertion, swap and deletion; labels kept (NER:
    only O words change, entity spans stay exact). Default synonyms: the world's sets."""
    from ..data.augment import SynonymFile, VectorSynonyms, augment_file, only_ops

    if synonyms is not None and vectors is not None:
        raise LmforgeError("give --synonyms or --vectors, not both")
    source = None
    if synonyms is not None:
        source = SynonymFile(synonyms)
    elif vectors is not None:
        from ..embeddings.recipe import load_vectors

        source = VectorSynonyms(load_vectors(vectors), min_similarity=min_similarity)
    switched_off = only_ops([op.strip() for op in ops.split(",") if op.strip()])
    stats = augment_file(src, out, n_aug=n_aug, alpha=alpha, lang=lang, synonyms=source,
                         seed=seed, show_progress=True, **switched_off)
    _echo(f"wrote {stats['written']} records ({stats['records']} original) to {out}")


@corpus_app.command("tasks", epilog="Example: lmforge corpus tasks sentiment --out data/sent")
def corpus_tasks(
    name: Annotated[str, typer.Argument(
        help="sentiment, topic, ner, relations, translation, qa or summarization.")],
    out: Annotated[str, typer.Option(help="Output folder.")],
    seed: Annotated[int, typer.Option()] = 0,
    langs: Annotated[str, typer.Option(
        help="Languages, comma-separated; for translation source,target (en,zh).")
    ] = "en,zh",
):
    """Write a task set of the world (splits, card with ceilings)."""
    from ..corpora.tasks import render_task_set, write_task_set

    path = write_task_set(render_task_set(name, seed=seed, langs=langs.split(",")), out)
    _echo(f"wrote {name} to {path}")


def _read_sources(path: str) -> list[str]:
    """Source texts: a .txt file (one per line), .jsonl records with 'src' (or 'text'),
    or a .tsv of source<TAB>target pairs (the source column)."""
    from ..data.parallel import read_parallel

    p = Path(path)
    if p.suffix == ".tsv":
        return [r["src"] for r in read_parallel(p, src_lang="src", tgt_lang="tgt")]
    if p.suffix == ".jsonl":
        return [r.get("src", r.get("text")) if isinstance(r, dict) else r
                for r in _read_inputs(path, fields=("src", "text"))]
    return [str(x) for x in _read_inputs(path)]


def _generate_cli(task: str, run: str, text: list[str] | None, input: str | None,
                  out: str | None, key: str, **decode) -> None:
    """The shared body of ``lmforge translate`` and ``lmforge summarize``; ``out`` is
    written encrypted when a key is active."""
    from ..privacy.encrypted_io import write_text
    from ..tasks.seq2seq_predictor import load_seq2seq

    if (text is None) == (input is None):
        raise LmforgeError("give --text (one or more) or --input FILE, not both")
    if out is not None and Path(out).suffix not in (".jsonl", ".txt"):
        raise LmforgeError(f"--out {out}: use a .jsonl or .txt file")
    sources = list(text) if text is not None else _read_sources(input)
    outputs = load_seq2seq(run, task).generate(sources, **decode)
    if out is not None and out.endswith(".txt"):
        write_text(out, "".join(h.replace("\n", " ") + "\n" for h in outputs))
    elif out is not None:
        write_text(out, "".join(json.dumps({"src": s, key: h}, ensure_ascii=False)
                                       + "\n" for s, h in zip(sources, outputs, strict=True)))
    if out is not None:
        _echo(f"wrote {len(outputs)} {key}s to {out}")
    else:
        for h in outputs:
            _echo(h)


_BEAMS = Annotated[int | None, typer.Option(min=1, help="Beam size (default: the recipe's).")]
_ALPHA = Annotated[float | None, typer.Option(min=0, help="GNMT length penalty.")]
_NO_REPEAT = Annotated[int | None, typer.Option(min=0, help="Never repeat an n-gram of this "
                                                "size.")]
_MAX_NEW = Annotated[int | None, typer.Option(min=1)]
_OUT = Annotated[str | None, typer.Option(help="Write the outputs here (.jsonl or .txt).")]


@app.command(epilog="Example: lmforge translate runs/translate-transformer-en-zh "
                    "--text 'Anna met Tom at the park on Monday morning.'")
@with_key
def translate(
    run: Annotated[str, typer.Argument(help="A translation run or checkpoint folder.",
                                       metavar="RUN")],
    text: Annotated[list[str] | None, typer.Option(help="A text to translate "
                                                   "(repeatable).")] = None,
    input: Annotated[str | None, typer.Option(help=".txt (a text per line), .jsonl "
                                              "(records with src) or .tsv (pairs).")] = None,
    out: _OUT = None, beams: _BEAMS = None, alpha: _ALPHA = None,
    no_repeat_ngram_size: _NO_REPEAT = None, max_new_tokens: _MAX_NEW = None,
):
    """Translate texts with a trained encoder-decoder (beam search, length penalty). With
    a key option the run may be encrypted (it is read in memory) and --out is written
    encrypted."""
    _generate_cli("translate", run, text, input, out, "translation", beams=beams,
                  alpha=alpha, no_repeat_ngram_size=no_repeat_ngram_size,
                  max_new_tokens=max_new_tokens)


@app.command(epilog="Example: lmforge summarize runs/summarize-transformer --input "
                    "news.txt --out summaries.jsonl")
@with_key
def summarize(
    run: Annotated[str, typer.Argument(help="A summarisation run or checkpoint folder.",
                                       metavar="RUN")],
    text: Annotated[list[str] | None, typer.Option(help="A document to summarise "
                                                   "(repeatable).")] = None,
    input: Annotated[str | None, typer.Option(help=".txt (a document per line) or .jsonl "
                                              "(records with src or text).")] = None,
    out: _OUT = None, beams: _BEAMS = None, alpha: _ALPHA = None,
    no_repeat_ngram_size: _NO_REPEAT = None, max_new_tokens: _MAX_NEW = None,
):
    """Summarise documents with a trained encoder-decoder. With a key option the run may
    be encrypted (it is read in memory) and --out is written encrypted."""
    _generate_cli("summarize", run, text, input, out, "summary", beams=beams, alpha=alpha,
                  no_repeat_ngram_size=no_repeat_ngram_size, max_new_tokens=max_new_tokens)


def _retrieved_questions(pred, path: str) -> list[dict]:
    """The questions of a SQuAD file, each with the passages the run's index gives it."""
    from ..data.squad import read_squad
    from ..tasks.rag import open_run_index, rag_records

    records = read_squad(path)
    if not (pred.index_dir / "docs.sqlite").is_file():
        raise LmforgeError(f"{pred.index_dir}: the run's index is missing; it is built "
                           "when the run trains")
    with open_run_index(pred.index_dir.parent, pred.retrieval) as index:
        return rag_records(records, index, pred.retrieval)


def evaluate_seq2seq(run: str, data: list[str], out: str | None) -> None:
    """``lmforge evaluate`` on a translation run (sacreBLEU BLEU and chrF with their
    signatures, and exact match, on parallel files), a summarisation run (ROUGE on JSONL
    files of document and summary) or a generative QA run (EM and F1 on SQuAD files, each
    question read with the passages of the run's index), and the outputs that differ from
    the references (in ``out``, encrypted when a key is active)."""
    from ..data.parallel import read_parallel
    from ..privacy.encrypted_io import write_json
    from ..tasks.seq2seq_predictor import Answerer, Translator, load_seq2seq, record_lang

    pred = load_seq2seq(run)
    src, tgt = pred.langs[0], pred.langs[-1]
    for path in data:
        if isinstance(pred, Answerer):
            records = _retrieved_questions(pred, path)
        elif isinstance(pred, Translator):
            records = read_parallel(path, src_lang=src, tgt_lang=tgt)
        else:
            records = [{**r, "lang": record_lang(r, pred.langs)} for r in read_parallel(
                path, src_lang=src, tgt_lang=tgt, fields=("document", "summary"))]
        ev = pred.evaluate(records)
        m = ev["metrics"]
        _echo(f"{path}: {ev['n']} {'questions' if isinstance(pred, Answerer) else 'pairs'}")
        if isinstance(pred, Answerer):
            _echo(f"  EM {m['exact']:.2f}  F1 {m['f1']:.2f}  (English: SQuAD; Chinese: "
                  "CMRC 2018)" + "".join(
                      f"; {p} EM {m[p + '_exact']:.2f} F1 {m[p + '_f1']:.2f}"
                      for p in ("HasAns", "NoAns") if p + "_f1" in m))
            if "gold_in_passages" in m:
                _echo(f"  answer in the retrieved passages: {m['gold_in_passages']:.3f} of "
                      "the answerable questions")
        elif isinstance(pred, Translator):
            _echo(f"  BLEU {m['bleu']:.2f}  ({m['bleu_signature']})")
            _echo(f"  chrF {m['chrf']:.2f}  ({m['chrf_signature']})")
            _echo(f"  exact match {m['exact_match']:.4f}")
        else:
            _echo(f"  ROUGE-1 {m['rouge1']:.2f}  ROUGE-2 {m['rouge2']:.2f}  "
                  f"ROUGE-L {m['rougeL']:.2f}  (English: stemmed words; Chinese: characters)")
        if out is not None:
            folder = Path(out) / Path(path).stem
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "metrics.json", m)
            _write_errors(folder, ev["errors"])
