"""The ``lmforge`` command line: one verb per step of a model's life.

The CLI is thin: each verb parses its options and calls the library function that does
the work. User errors (:class:`~lmforge.errors.LmforgeError`) print one line on stderr
and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import LmforgeError
from ..eval.attacks import Attack
from .key_options import with_key

app = typer.Typer(
    name="lmforge",
    help="Language models from theory to practice: data, tokenizers, training, "
         "evaluation and generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
corpus_app = typer.Typer(help="Write the built-in corpora to files.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train and inspect tokenizers.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(corpus_app, name="corpus")
app.add_typer(tokenizer_app, name="tokenizer")

_state = {"debug": False}


class Quantize(str, enum.Enum):
    """``--quantize`` choices (see :func:`lmforge.hub.load_pretrained`)."""

    int8 = "int8"
    int8_dynamic = "int8-dynamic"


class Backend(str, enum.Enum):
    """``lmforge generate --backend`` choices."""

    torch = "torch"
    onnxruntime = "onnxruntime"


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False):
    _state["debug"] = debug


def _echo(msg: str = "") -> None:
    """Print a line (on rank 0 only, in a torchrun launch)."""
    from ..distributed.env import is_main_process

    if is_main_process():
        typer.echo(msg)


# ----------------------------------------------------------------------------- data

@data_app.command("prepare", epilog="Example: lmforge data prepare corpus/*.txt --out data/my "
                                    "--kind bpe --vocab-size 8000")
def data_prepare(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs (.txt, .jsonl, "
                                                     ".csv, .parquet).", metavar="INPUT...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    tokenizer: Annotated[str | None, typer.Option(
        help="Use this tokenizer.json or model folder instead of training one.")] = None,
    kind: Annotated[str, typer.Option(help="Tokenizer to train: char, bpe or wordpiece.")] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size of the trained tokenizer.")]
    = 4096,
    min_frequency: Annotated[int, typer.Option(help="Minimum count of a merge/token.")] = 2,
    special_token: Annotated[list[str] | None, typer.Option(
        "--special-token", help="Extra special token (repeatable).", metavar="TOKEN")] = None,
    field: Annotated[str, typer.Option(help="JSONL field with the text.")] = "text",
    column: Annotated[str, typer.Option(help="CSV/Parquet column with the text.")] = "text",
    val_fraction: Annotated[float, typer.Option(help="Share of documents for validation.")]
    = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the document split.")] = 0,
    clean: Annotated[bool, typer.Option("--clean/--no-clean", help="Normalise text.")] = True,
    dedup: Annotated[bool, typer.Option("--dedup/--no-dedup",
                                        help="Drop exact duplicate documents.")] = True,
    redact_pii: Annotated[bool, typer.Option(
        "--redact-pii", help="Mask personal data ([PHONE], [PERSON], ...) before training; "
        "see lmforge data redact.")] = False,
    pii_types: Annotated[str | None, typer.Option(
        help="With --redact-pii: comma-separated PII types (default: all).")] = None,
):
    """Tokenize text into memory-mapped token shards with a train/val split."""
    from ..config import TokenizerConfig, build_section
    from ..data.prepare import prepare_data
    from ..tokenize import Tokenizer

    if pii_types is not None and not redact_pii:
        raise LmforgeError("--pii-types needs --redact-pii")
    if not 0.0 <= val_fraction < 1.0:  # the library's rule, with the flag's name
        raise LmforgeError(f"--val-fraction must be in [0, 1) (0 = no validation split), "
                           f"got {val_fraction}")
    tok = Tokenizer.load(tokenizer) if tokenizer else None
    spec = build_section(TokenizerConfig, "tokenizer", kind=kind, vocab_size=vocab_size,
                         min_frequency=min_frequency, special_tokens=special_token or [])
    meta = prepare_data(inputs, out, tokenizer=tok, tokenizer_spec=spec, field=field,
                        column=column, clean=clean, dedup=dedup, val_fraction=val_fraction,
                        seed=seed, redact_pii=(pii_types.split(",") if pii_types else True)
                        if redact_pii else False)
    for split, info in meta["splits"].items():
        _echo(f"{split}: {info['documents']} documents, {info['tokens']} tokens")
    _echo(f"wrote {out} ({meta['dtype']}, vocab {meta['vocab_size']})")


# ----------------------------------------------------------------------------- corpora

@corpus_app.command("world", epilog="Example: lmforge corpus world --out data/world "
                                    "--train 100000")
def corpus_world(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    train: Annotated[int, typer.Option(help="Training sentences.")] = 100_000,
    val: Annotated[int, typer.Option(help="Validation sentences.")] = 2000,
    test: Annotated[int, typer.Option(help="Test sentences.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
):
    """Write the bilingual world corpus (train/val/test, with exact surprisal)."""
    from ..corpora import write_lm_corpus
    from ..io import ensure_writable_dir

    ensure_writable_dir(out)
    write_lm_corpus(out, train, val, test, seed)
    _echo(f"wrote {out}/train.txt, val.txt, test.txt (+ .jsonl with exact bits)")


@tokenizer_app.command("train", epilog="Example: lmforge tokenizer train corpus.txt "
                                       "--kind bpe --vocab-size 8000 --out tok/")
def tokenizer_train(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs.", metavar="INPUT...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    kind: Annotated[str, typer.Option(help="char, bpe or wordpiece.")] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size.")] = 4096,
    min_frequency: Annotated[int, typer.Option(help="Minimum count.")] = 2,
    special_token: Annotated[list[str] | None, typer.Option(
        "--special-token", help="Extra special token (repeatable).", metavar="TOKEN")] = None,
    field: Annotated[str, typer.Option(help="JSONL field with the text.")] = "text",
    column: Annotated[str, typer.Option(help="CSV/Parquet column with the text.")] = "text",
):
    """Train a tokenizer and save tokenizer.json."""
    from ..config import TokenizerConfig, build_section
    from ..data.readers import iter_documents
    from ..io import ensure_writable_dir
    from ..tokenize import train_tokenizer

    spec = build_section(TokenizerConfig, "tokenizer", kind=kind, vocab_size=vocab_size,
                         min_frequency=min_frequency, special_tokens=special_token or [])
    ensure_writable_dir(out)
    texts = (d.text for d in iter_documents(inputs, field=field, column=column))
    tok = train_tokenizer(spec.kind, texts=texts, vocab_size=spec.vocab_size,
                          min_frequency=spec.min_frequency, special_tokens=spec.special_tokens)
    tok.save(out)
    _echo(f"wrote {out}/tokenizer.json ({tok.kind}, vocab {tok.vocab_size})")


@tokenizer_app.command("encode", epilog="Example: lmforge tokenizer encode runs/quickstart "
                                        "--text '你好, world'")
def tokenizer_encode(
    path: Annotated[str, typer.Argument(help="tokenizer.json, a model folder or a run.")],
    text: Annotated[str, typer.Option(help="Text to encode.")],
):
    """Show how a text is split into tokens."""
    from ..hub import load_tokenizer

    tok = load_tokenizer(path)
    ids = tok.encode(text)
    _echo(f"{len(ids)} tokens: {ids}")
    _echo(" | ".join(tok.decode([i], skip_special_tokens=False) for i in ids))


# ----------------------------------------------------------------------------- training

@app.command(epilog="Example: lmforge pretrain configs/gpt-world.yaml --set train.lr=3e-4 "
                    "--set train.max_steps=2000")
@with_key
def pretrain(
    config: Annotated[str, typer.Argument(help="Recipe YAML (a path, or a built-in name such "
                                               "as gpt-world).", metavar="CONFIG")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field: section.field=value (repeatable).",
        metavar="KEY=VALUE")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (overrides run.out_dir).")]
    = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the run folder exactly "
                                              "where it stopped.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show the progress bar.")] = True,
):
    """Pretrain a model from a recipe: data -> tokenizer -> model -> trained checkpoints
    (encrypted with a key option; --resume then needs the same key)."""
    from ..config import load_recipe, resolve_recipe_path
    from ..pretrain import pretrain as run_pretrain
    from ..train.checkpoint import check_run_key

    overrides = list(set_ or [])
    if out is not None:
        overrides.append(f"run.out_dir={out}")
    recipe = load_recipe(resolve_recipe_path(config), overrides)
    check_run_key(recipe.run.path, recipe.train.distributed, resume)
    result = run_pretrain(recipe, resume=resume, show_progress=progress, log=_echo)
    _echo(f"done: {result.summary()}")


DEFAULT_NEW_TOKENS = 64


def _read_schema(path: Path) -> dict:
    """The JSON schema in ``path``; a missing file or one that is not a JSON object is a
    one-line error naming it."""
    from ..errors import ConfigError
    from ..io import read_json

    try:
        return read_json(path, error=ConfigError)
    except ConfigError as e:
        raise ConfigError(f"--json-schema: {e}") from None


@app.command(epilog="Example: lmforge generate runs/quickstart --prompt 'Alice' "
                    "--prompt '小明' --temperature 0.8")
@with_key
def generate(
    model: Annotated[str, typer.Argument(help="A run folder or a model folder.", metavar="RUN_OR_DIR")],
    prompt: Annotated[list[str] | None, typer.Option(
        help="Prompt (repeatable; batched).", metavar="TEXT")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        help=f"Tokens to generate [default: {DEFAULT_NEW_TOKENS}, fewer when the longest "
             "prompt plus that would pass the model's context]")] = None,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Keep the k most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    repetition_penalty: Annotated[float, typer.Option(help="CTRL-style penalty (>1).")] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).", metavar="TEXT")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = False,
    quantize: Annotated[Quantize | None, typer.Option(
        help="int8 linear layers for faster CPU decoding: int8 (weights) or int8-dynamic "
             "(weights and activations).")] = None,
    beams: Annotated[int, typer.Option(
        help="Beam size; 1 = no beam search (greedy or sampling). Beam search is "
             "deterministic: the sampling options do not apply.")] = 1,
    min_new_tokens: Annotated[int, typer.Option(
        help="Generate at least this many tokens (eos is banned before).")] = 0,
    no_repeat_ngram_size: Annotated[int, typer.Option(
        help="Never repeat an n-gram of this size (prompt included); 0 = off.")] = 0,
    bad_word: Annotated[list[str] | None, typer.Option(
        help="A word never to generate (repeatable).", metavar="WORD")] = None,
    force_word: Annotated[list[str] | None, typer.Option(
        help="A word the output must contain (repeatable; 'a|b' = either); runs beam "
             "search.", metavar="WORD")] = None,
    json_schema: Annotated[Path | None, typer.Option(
        help="A JSON schema file: the output is JSON that follows it (grammar-constrained "
             "decoding; needs the serve extra).", metavar="FILE")] = None,
    control: Annotated[str | None, typer.Option(
        help="Control codes of a controlled-generation run, e.g. 'negative, sport, zh' "
             "(sentiment, topic, language; any subset).", metavar="CODES")] = None,
    backend: Annotated[Backend, typer.Option(
        help="torch (eager) or onnxruntime: a GPT exported to ONNX, run by ONNX Runtime "
             "with the same decoding options.")] = Backend.torch,
    onnx: Annotated[Path | None, typer.Option(
        help="With --backend onnxruntime: the .onnx file to run (from lmforge export "
             "onnx; the tokenizer.json beside it, else RUN_OR_DIR's; RUN_OR_DIR may be "
             "that file itself). Without it, RUN_OR_DIR is exported to a temporary "
             "folder first (seconds); export once to reuse it.", metavar="FILE")] = None,
):
    """Generate text from a trained model; an encoder-decoder translates each prompt."""
    from ..control.codes import code_ids, parse_controls
    from ..errors import ConfigError
    from ..generate import GenerationConfig
    from ..generate.decode import check_prompts
    from ..generate.seq2seq import is_encoder_decoder, translate
    from ..generate.text import complete_ids, encode_prompt, stream_ids
    from ..privacy.encrypted_io import active_key

    if active_key() is not None and backend is Backend.onnxruntime:
        raise ConfigError("--backend onnxruntime reads plaintext files; an encrypted model "
                          "runs with --backend torch")
    controls = parse_controls(control) if control is not None else None
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p,
                   repetition_penalty=repetition_penalty, stop=list(stop or []), seed=seed,
                   num_beams=beams, min_new_tokens=min_new_tokens,
                   no_repeat_ngram_size=no_repeat_ngram_size, bad_words=list(bad_word or []),
                   force_words=[w.split("|") if "|" in w else w for w in force_word or []],
                   json_schema=None if json_schema is None else _read_schema(json_schema))
    # the options are checked before the (slow) model load
    GenerationConfig(max_new_tokens=DEFAULT_NEW_TOKENS if max_new_tokens is None
                     else max_new_tokens, **options)
    m, tok = _export.generation_model(model, backend.value, onnx,
                                      quantize.value if quantize else None)
    prompts = list(prompt or [""])
    if is_encoder_decoder(m):  # greedy or beam search; sampling options do not apply
        if controls is not None:
            raise ConfigError("--control needs a decoder trained with control codes "
                              "(lmforge finetune control-world); this is an encoder-decoder")
        if bad_word or force_word or min_new_tokens or json_schema:
            raise ConfigError("--bad-word, --force-word, --min-new-tokens and --json-schema "
                              "apply to decoder-only models; this one is an encoder-decoder")
        for target in translate(m, tok, prompts, beams=beams,
                                max_new_tokens=max_new_tokens or DEFAULT_NEW_TOKENS,
                                no_repeat_ngram_size=no_repeat_ngram_size):
            _echo(target)
        return
    ids = [encode_prompt(tok, p) if controls is None else
           code_ids(tok, controls) + tok.encode(p) for p in prompts]
    if max_new_tokens is None:  # the default fits the context; an explicit value must
        room = m.config.max_seq_len - max(map(len, ids))
        max_new_tokens = max(1, min(DEFAULT_NEW_TOKENS, room))
    check_prompts(ids, max_new_tokens, m.config.max_seq_len)  # before anything is printed
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, **options)
    if stream:
        for p, p_ids in zip(prompts, ids, strict=True):
            pieces = stream_ids(m, tok, p_ids, cfg)  # a bad option fails before the prompt
            typer.echo(p, nl=False)
            for piece in pieces:
                typer.echo(piece, nl=False)
            typer.echo()
        return
    for p, completion in zip(prompts, complete_ids(m, tok, ids, cfg), strict=True):
        _echo(f"{p}{completion.text}")


@app.command(epilog="Example: lmforge evaluate runs/quickstart --data runs/quickstart/"
                    "world/test.jsonl")
@with_key
def evaluate(
    model: Annotated[str, typer.Argument(help="A run folder or a model folder.", metavar="RUN_OR_DIR")],
    data: Annotated[list[str] | None, typer.Option(
        help="Text file(s): .txt, .jsonl, .csv, .parquet (control and code runs need "
             "none).",
        metavar="FILE")] = None,
    field: Annotated[str, typer.Option(help="JSONL field with the text.")] = "text",
    column: Annotated[str, typer.Option(help="CSV/Parquet column with the text.")] = "text",
    batch_size: Annotated[int, typer.Option(help="Texts per batch.")] = 32,
    quantize: Annotated[Quantize | None, typer.Option(
        help="Score with int8 linear layers (to measure what quantisation costs).")] = None,
    out: Annotated[str | None, typer.Option(
        help="Task models: write metrics, confusion matrix and errors.jsonl here.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Control and code runs: override a field of the recipe's evaluate: "
        "section (samples=8, bodies=400).")] = None,
    attack: Annotated[Attack | None, typer.Option(
        help="Classifier and NER runs: also score the data under this attack, beside the "
             "clean metric.")] = None,
    rate: Annotated[float, typer.Option(help="The attack's rate, in (0, 1].")] = 0.1,
    seed: Annotated[int, typer.Option(help="The attack's seed.")] = 0,
    defend: Annotated[bool, typer.Option(
        help="Classifier and NER runs: apply the normalisation defences (invisible "
             "characters, homoglyphs, mixed scripts) to every input.")] = False,
):
    """Perplexity and bits per document of a language model on held-out text; for a
    fine-tuned task model, the task's metrics on labelled files; for a translation run,
    BLEU, chrF and exact match on parallel files (.tsv or .jsonl); for a summarisation
    run, ROUGE on .jsonl files of document and summary; for a chat run, factual accuracy
    on the world's dialogues or the assistant-token loss on chat JSONL; for a control
    run, the control accuracies of texts generated for every combination of codes; for
    a code run, next-line exact match, parsing bodies and perplexity on its test files.
    A classifier or NER run also reports its metrics under --attack (and the drop), with
    or without the --defend normalisation."""
    from ..evaluate import evaluate_texts
    from ..tasks import is_task_model
    from ..tasks.seq2seq_predictor import recipe_task, seq2seq_task_of

    if attack is not None or defend:
        from ..eval.attacks import check_rate

        if attack is not None:
            check_rate(rate)
        if not is_task_model(model):
            raise LmforgeError(f"{model}: --attack and --defend apply to fine-tuned "
                               "classifier and NER runs only")
    task = recipe_task(model)
    if task in ("control", "code"):
        from ..code.finetune import evaluate_code_run
        from ..control.finetune import evaluate_control_run

        rerun = evaluate_control_run if task == "control" else evaluate_code_run
        rerun(model, out, list(set_ or []), log=_echo)
        return
    if set_:
        raise LmforgeError("--set applies to control and code runs only")
    if not data:
        raise LmforgeError("give the held-out data with --data FILE")
    if task == "chat":
        from ..chat.finetune import evaluate_chat_files

        evaluate_chat_files(model, data, out, log=_echo)
        return
    if seq2seq_task_of(model) is not None:
        _tasks.evaluate_seq2seq(model, data, out)
        return
    if is_task_model(model):
        _tasks.evaluate_task(model, data, out, attack=attack.value if attack else None,
                             rate=rate, seed=seed, defend=defend)
        return

    report = evaluate_texts(model, data, field=field, column=column, batch_size=batch_size,
                            quantize=quantize.value if quantize else None)
    for line in report.lines():
        _echo(line)


@app.command(epilog="Example: lmforge quickstart --out runs/quickstart")
def quickstart(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/quickstart"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe field, e.g. train.max_steps=200.",
        metavar="KEY=VALUE")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Train exactly this many steps (replays a printed plan) instead of fitting "
             "the run to --budget.")] = None,
    budget: Annotated[float, typer.Option(
        help="Seconds the whole command may take; the number of steps is planned from "
             "the speed measured in the first steps.")] = 240.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
):
    """Build the world corpus, train a BPE tokenizer and a small GPT, evaluate and sample."""
    from ..quickstart import run_quickstart

    run_quickstart(out, overrides=list(set_ or []), show_progress=progress, log=_echo,
                   steps=steps, budget=budget)


@app.command(epilog="Example: lmforge info --json")
def info(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    measure: Annotated[bool, typer.Option(
        "--measure/--no-measure", help="Time fp32 and bf16 matmuls (about 0.5 s).")] = True,
):
    """Versions, CPU model and ISA, threads, matmul speed, and what precision: auto and
    each --quantize mode use on this machine."""
    import json

    from ..hardware import describe

    report = describe(measure=measure)
    if json_:
        _echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for line in report.lines():
            _echo(line)


# ----------------------------------------------------------------------------- models

viz_app = typer.Typer(help="Pictures of what models compute.", no_args_is_help=True)
app.add_typer(viz_app, name="viz")


@app.command(epilog="Example: lmforge convert hf/gpt2 models/gpt2 --to lmforge")
def convert(
    src: Annotated[str, typer.Argument(help="Hugging Face folder, lmforge model folder or run.",
                                       metavar="SRC")],
    dst: Annotated[str, typer.Argument(help="Output folder.", metavar="DST")],
    to: Annotated[str | None, typer.Option(help="hf or lmforge (default: the other format).")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty DST.")] = False,
):
    """Convert a model between Hugging Face and lmforge folders."""
    from ..convert import convert as run_convert

    _echo(f"wrote {run_convert(src, dst, to=to, overwrite=overwrite)}")


@viz_app.command("attention", epilog="Example: lmforge viz attention runs/quickstart "
                                      "--text '王芳星期天去了海边' --out runs/quickstart/attention")
def viz_attention(
    model: Annotated[str, typer.Argument(help="A run folder or a model folder.",
                                         metavar="RUN_OR_DIR")],
    text: Annotated[str, typer.Option(help="Text to show attention over.")],
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs.")],
    layer: Annotated[list[int] | None, typer.Option(
        help="Layer (repeatable; negative counts from the end).")] = None,
    head: Annotated[list[int] | None, typer.Option(
        help="Head (repeatable); one PNG per layer and head.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Cut the text to this many tokens.")] = 64,
):
    """Draw attention heatmaps of a GPT over a text, tokens on both axes."""
    from ..viz import plot_attention

    for p in plot_attention(model, text, out, layers=layer, heads=head, max_tokens=max_tokens):
        _echo(str(p))


@app.command("embed-text", epilog="Example: lmforge embed-text --text '今天天气很好' "
                                   "--text 'The weather is nice today' --out emb.npy")
@with_key
def embed_text(
    text: Annotated[list[str] | None, typer.Option(help="Text to embed (repeatable).",
                                                   metavar="TEXT")] = None,
    data: Annotated[list[str] | None, typer.Option(
        help="File(s) of texts: .txt (a line each), .jsonl, .csv, .parquet.",
        metavar="FILE")] = None,
    field: Annotated[str, typer.Option(help="JSONL field with the text.")] = "text",
    column: Annotated[str, typer.Option(help="CSV/Parquet column with the text.")] = "text",
    model: Annotated[str | None, typer.Option(
        help="BERT-family folder (default: the packaged all-MiniLM-L6-v2).")] = None,
    pooling: Annotated[str | None, typer.Option(help="mean, cls or max (default: the "
                                                     "model's own).")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize",
                                            help="L2-normalise each row.")] = True,
    out: Annotated[Path | None, typer.Option(help="Write .npy, .jsonl or .tsv instead of "
                                                  "printing a summary.")] = None,
):
    """Sentence embeddings (one row per text) from a BERT-family encoder."""
    from ..embeddings import embed_text as run_embed
    from ..embeddings.export import check_embeddings_path, summarize, write_embeddings

    if out is not None:
        check_embeddings_path(out)  # before the model runs, so no work is lost
    texts = list(text or [])
    if data:
        from ..data.readers import iter_documents
        from ..errors import DataError

        docs = [d.text for d in iter_documents(data, field=field, column=column)]
        if not docs:
            raise DataError(f"empty corpus: no documents in {' '.join(map(str, data))}")
        texts += docs
    if not texts:
        raise LmforgeError("give --text or --data: there is nothing to embed")
    if pooling is not None and pooling not in ("mean", "cls", "max"):
        raise LmforgeError(f"--pooling must be mean, cls or max (got {pooling!r})")
    vectors = run_embed(texts, model=model, normalize=normalize, pooling=pooling)
    if out is not None:
        write_embeddings(out, texts, vectors)
        _echo(f"wrote {out} ({vectors.shape[0]} x {vectors.shape[1]})")
        return
    for line in summarize(texts, vectors):
        _echo(line)


# ----------------------------------------------------------------------------- embeddings

embed_app = typer.Typer(help="Word embeddings: word2vec, GloVe and FastText.", no_args_is_help=True)
app.add_typer(embed_app, name="embed")


@embed_app.command("train", epilog="Example: lmforge embed train w2v-world-zh "
                                   "--set word2vec.epochs=3")
def embed_train(
    config: Annotated[str, typer.Argument(help="Embedding recipe YAML (or a built-in name).",
                                          metavar="CONFIG")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field: section.field=value (repeatable).",
        metavar="KEY=VALUE")] = None,
):
    """Train word vectors from a recipe; writes vectors.bin (word2vec format)."""
    from ..config import RECIPE_DIR, resolve_recipe_path
    from ..embeddings.recipe import load_embed_recipe, train_embeddings

    recipe = load_embed_recipe(resolve_recipe_path(config, RECIPE_DIR / "embed"),
                               list(set_ or []))
    kv, stats = train_embeddings(recipe, log=_echo)
    _echo(f"{len(kv)} words x {kv.vectors.shape[1]} dims -> {recipe.run.path}/vectors.bin")
    for name, acc in stats.get("planted_analogies", {}).items():
        _echo(f"analogy {name}: {acc:.3f}")


@embed_app.command("query", epilog="Example: lmforge embed query runs/w2v-world-zh --word 北京 "
                                   "--topn 10")
@with_key
def embed_query(
    model: Annotated[str, typer.Argument(help="A word2vec file or an embed run folder.",
                                         metavar="MODEL")],
    word: Annotated[list[str], typer.Option(help="Query word (repeatable).", metavar="WORD")],
    topn: Annotated[int, typer.Option(help="Neighbours to show.")] = 10,
):
    """Nearest neighbours of words by cosine similarity."""
    from ..embeddings.recipe import load_vectors

    kv = load_vectors(model)
    answers = [(w, kv.most_similar(w, topn=topn)) for w in word]  # every word checked first
    for w, neighbours in answers:
        _echo(f"{w}:")
        for other, cos in neighbours:
            _echo(f"  {other}\t{cos:.4f}")


@embed_app.command("analogy", epilog="Example: lmforge embed analogy runs/w2v-world-zh 男人 国王 女人")
@with_key
def embed_analogy(
    model: Annotated[str, typer.Argument(help="A word2vec file or an embed run folder.",
                                         metavar="MODEL")],
    a: Annotated[str, typer.Argument(help="a in a : b :: c : ?")],
    b: Annotated[str, typer.Argument(help="b")],
    c: Annotated[str, typer.Argument(help="c")],
    topn: Annotated[int, typer.Option(help="Answers to show.")] = 5,
    method: Annotated[str, typer.Option(help="add (3CosAdd) or mul (3CosMul).")] = "add",
):
    """Solve a : b :: c : ? with vector arithmetic."""
    from ..embeddings.recipe import load_vectors

    for word, score in load_vectors(model).analogy(a, b, c, topn=topn, method=method):
        _echo(f"{word}\t{score:.4f}")


@embed_app.command("plot", epilog="Example: lmforge embed plot runs/w2v-world --word Paris "
                                  "--word France --word Tokyo --word Japan --out words.png")
@with_key
def embed_plot(
    model: Annotated[str, typer.Argument(help="A word2vec file or an embed run folder.",
                                         metavar="MODEL")],
    word: Annotated[list[str], typer.Option(help="Word to place (repeatable).",
                                            metavar="WORD")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")],
    method: Annotated[str, typer.Option(help="pca or tsne.")] = "pca",
):
    """A 2-D projection (PCA or t-SNE) of word vectors as a PNG, CJK labels rendered."""
    from ..embeddings.plot import plot_words
    from ..embeddings.recipe import load_vectors

    _echo(f"wrote {plot_words(load_vectors(model), list(word), out, method)}")


from . import chat as _chat  # noqa: E402,F401  (registers chat)
from . import complete as _complete  # noqa: E402,F401  (registers complete)
from . import compress as _compress  # noqa: E402,F401  (registers compress)
from . import cv as _cv  # noqa: E402,F401  (registers cv)
from . import export as _export  # noqa: E402  (registers export; generate's ONNX backend)
from . import pii as _pii  # noqa: E402,F401  (registers data redact)
from . import privacy as _privacy  # noqa: E402,F401  (registers keygen, encrypt, decrypt, rekey)
from . import qa as _qa  # noqa: E402,F401  (registers qa index, search, ask)
from . import rl as _rl  # noqa: E402,F401  (registers rl train, evaluate, play)
from . import serve as _serve  # noqa: E402,F401  (registers serve)
from . import serve_admin as _serve_admin  # noqa: E402,F401  (registers keys, audit)
from . import tasks as _tasks  # noqa: E402,F401  (registers finetune, predict, lora, ...)
from . import tune as _tune  # noqa: E402,F401  (registers tune)

# ----------------------------------------------------------------------------- entry

def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line + exit 2."""
    from ..distributed.env import destroy as destroy_process_group

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="lmforge", standalone_mode=False)
        destroy_process_group()  # a torchrun launch leaves its group cleanly
    except LmforgeError as e:
        if debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        if isinstance(e, _usage_errors()):
            e.show()
            sys.exit(2)
        raise


def _usage_errors() -> tuple[type, ...]:
    """Click's usage-error classes: click's own and the copy recent typer versions vendor."""
    import click

    found: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer that uses click directly
        pass
    else:
        found.append(ClickException)
    return tuple(found)


if __name__ == "__main__":
    main()
