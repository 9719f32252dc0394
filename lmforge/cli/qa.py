"""CLI verbs of question answering over documents: ``lmforge qa index``, ``qa search`` and
``qa ask``. Thin: each parses options and calls :mod:`lmforge.retrieval` (the index and
:func:`~lmforge.retrieval.ask.ask`). With a key option a new index is written encrypted
and an encrypted one is read in memory (:mod:`lmforge.retrieval.store`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError, DataError
from . import _echo, app
from .key_options import with_key

qa_app = typer.Typer(help="Question answering over documents: index, search, ask.",
                     no_args_is_help=True)
app.add_typer(qa_app, name="qa")

DENSE = ("exact", "hnsw", "none")
EXCERPT = 100  # characters of a passage shown per hit


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")


def _open(folder: Path):
    """The index in ``folder``, or a one-line error that says how to build one."""
    from ..retrieval import Index
    from ..retrieval.store import FILE

    if not (folder / FILE).is_file():
        raise DataError(f"{folder} is not a retrieval index (no {FILE}); build one with "
                        f"lmforge qa index DOCS --out {folder}")
    return Index.open(folder)


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT - 1] + "…"


def _check_same(index, out: Path, dense: str | None, max_words: int | None,
                overlap: int | None) -> None:
    """Creation options given for an existing index must be the ones it was built with."""
    have = {"--dense": index.dense.manifest["kind"] if index.dense else "none",
            "--max-words": index.store.max_words, "--overlap": index.store.overlap}
    for flag, given in (("--dense", dense), ("--max-words", max_words),
                        ("--overlap", overlap)):
        if given is not None and given != have[flag]:
            raise ConfigError(f"{out} holds an index built with {flag} {have[flag]} (not "
                              f"{given}); --dense, --max-words and --overlap apply only when "
                              "an index is created")


def _check_form(path: Path) -> None:
    """A key given for a plaintext index would leave it plaintext: refused, with the fix."""
    from ..privacy.crypto import is_encrypted
    from ..privacy.encrypted_io import active_key

    if active_key() is not None and not is_encrypted(path):
        raise ConfigError(f"{path.parent} is a plaintext index; encrypt it first with "
                          f"lmforge encrypt {path.parent} and the same key option")


@qa_app.command("index", epilog="Example: lmforge qa index data/qa/docs.jsonl notes/ "
                                "--out runs/qa-index --dense hnsw")
@with_key
def qa_index(
    docs: Annotated[list[str], typer.Argument(help=".jsonl files (id, text, optional title "
                                              "and lang) or folders of .txt files.",
                                              metavar="DOCS...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder; an existing index "
                                      "gets the new documents.", metavar="IDX")],
    dense: Annotated[str | None, typer.Option(help="Vector index: exact, hnsw or none "
                                              "(BM25 only). [default: exact]")] = None,
    encoder: Annotated[str | None, typer.Option(help="Sentence encoder: minilm (the "
                                                "packaged all-MiniLM-L6-v2) or a model "
                                                "folder. [default: minilm]")] = None,
    max_words: Annotated[int | None, typer.Option(help="Words per passage. [default: 128]")]
    = None,
    overlap: Annotated[int | None, typer.Option(help="Words shared by consecutive windows "
                                                "of a long paragraph. [default: 32]")] = None,
):
    """Index documents for search: BM25 and, unless --dense none, sentence vectors. With
    a key option a new index is encrypted (and an encrypted one needs its key)."""
    import time

    from ..retrieval import Index, read_docs
    from ..retrieval.store import FILE

    if dense is not None and dense not in DENSE:
        raise ConfigError(f"--dense must be one of {', '.join(DENSE)} (got {dense!r})")
    if dense == "none" and encoder is not None:
        raise ConfigError("--encoder needs a vector index (--dense exact or hnsw)")
    if encoder not in (None, "minilm") and not Path(encoder).is_dir():
        raise ConfigError(f"--encoder {encoder}: no such model folder (or use minilm)")
    records = [d for path in docs for d in read_docs(path)]  # all checked before writing
    start = time.perf_counter()
    existing = (out / FILE).is_file()
    if existing:
        _check_form(out / FILE)
        index = Index.open(out, encoder=encoder)
    else:
        kind = dense or "exact"
        index = Index.create(out, encoder=encoder, dense=None if kind == "none" else kind,
                             max_words=128 if max_words is None else max_words,
                             overlap=32 if overlap is None else overlap)
    with index:
        if existing:
            _check_same(index, out, dense, max_words, overlap)
        before = len(index)
        new = index.add(records)
        n_docs, n_passages = index.store.size()
    _echo(f"added {new} new documents ({len(records) - new} already indexed) in "
          f"{time.perf_counter() - start:.1f} s; {out} holds {n_docs} documents "
          f"({before} before), {n_passages} passages")


@qa_app.command("search", epilog="Example: lmforge qa search runs/qa-index --query "
                                 "'Where was Anna born?' --k 3")
@with_key
def qa_search(
    index: Annotated[Path, typer.Argument(help="An index folder (lmforge qa index).",
                                          metavar="IDX")],
    query: Annotated[str, typer.Option(help="What to search for.")],
    k: Annotated[int, typer.Option(help="Passages to show.")] = 5,
    mode: Annotated[str | None, typer.Option(help="bm25, dense or hybrid. [default: hybrid "
                                             "with a vector index, else bm25]")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """The passages that best match a query: rank, score, document id, an excerpt."""
    _check_k(k)
    with _open(index) as ix:
        hits = ix.search(query, k, mode)
    if json_:
        _echo(json.dumps({"query": query, "hits": [asdict(h) for h in hits]},
                         ensure_ascii=False))
        return
    if not hits:
        _echo("no passage matches")
    for h in hits:
        _echo(f"{h.rank:>3}  {h.score:9.4f}  {h.doc_id}  {_excerpt(h.text)}")


@qa_app.command("ask", epilog="Example: lmforge qa ask runs/qa-index --question "
                              "'Where was Anna born?' --model runs/qa-extractive-minilm")
@with_key
def qa_ask(
    index: Annotated[Path, typer.Argument(help="An index folder (lmforge qa index).",
                                          metavar="IDX")],
    question: Annotated[str, typer.Option(help="The question.")],
    model: Annotated[str | None, typer.Option(help="The reader: a fine-tuned extractive QA "
                                              "run, or a seq2seq run with --mode "
                                              "generative.", metavar="RUN")] = None,
    mode: Annotated[str, typer.Option(help="extractive (a span of one passage) or "
                                      "generative (written from all k passages).")]
    = "extractive",
    k: Annotated[int | None, typer.Option(help="Passages to retrieve and read. [default: "
                                          "a generative QA run's retrieval.k, else 5]")]
    = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Answer a question from the index: retrieve k passages (hybrid with a vector index,
    else BM25), let the reader answer, and show the answer with its source."""
    from ..retrieval.ask import ask, check_mode, load_reader

    if k is not None:
        _check_k(k)
    check_mode(mode)
    if not question.strip():
        raise DataError("--question is empty")
    with _open(index) as ix:  # the index is checked before the (slow) model load
        reader = load_reader(model, mode) if model is not None else None
        if k is None:
            trained = getattr(reader, "retrieval", None)
            k = trained.k if trained is not None else 5
        result = ask(ix, question, reader, mode=mode, k=k)
    if json_:
        _echo(json.dumps(result, ensure_ascii=False))
        return
    src = result["source"]
    if model is None:
        _echo("no reader was given (--model RUN): showing the best passage")
    elif result["answer"] == "":
        _echo("answer: (none: the passages do not answer the question)")
    else:
        _echo(f"answer: {result['answer']}")
    if result["score"] is not None:
        _echo(f"score: {result['score']:.4f}")
    if src is None:
        _echo("no passage matches the question")
        return
    _echo(f"source: {src['doc_id']} (passage {src['passage_id']})")
    _echo("  " + " ".join(src["text"].split()))
