r"""Answer a question from an index: retrieve passages, then let a reader answer from them.

:func:`ask` takes the ``k`` best passages for the question (hybrid search when the index
has dense vectors, else BM25; see :class:`~lmforge.retrieval.index.Index`) and hands them
to a reader of one of two kinds:

- **extractive** (:class:`ExtractiveReader`): any object with ``predict(records)``, where
  a record is ``{"question", "context"}`` and a prediction ``{"answer", "score", ...}``,
  ``answer`` a span of the context or ``""`` for "not in this context" (a fine-tuned
  extractive QA run, :func:`lmforge.tasks.load_task_model`). Each passage is read on its
  own, and the answer is the non-empty one with the highest score,

  .. math::

      \hat a = a_{p^*}, \qquad p^* = \arg\max_{p \in P_k,\ a_p \ne ""} s_p,

  its passage the source. A passage that does not hold the answer says ``""`` and so
  cannot veto another that does; only when every passage says ``""`` is the answer
  ``""`` (no answer), with the passage of the highest no-answer score as its source.
- **generative** (:class:`GenerativeReader`): any object with ``generate(texts)``, a
  seq2seq run (:func:`lmforge.tasks.seq2seq_predictor.load_seq2seq`), which reads one input
  ``question: Q context: P1 P2 ... Pk`` (the passages in rank order, white space
  collapsed) and writes the answer. It gives no score; the source is the first passage
  that holds the answer's text, else the first passage.

Without a reader the answer is None and the source the best passage. The result::

    {"answer": str | None, "score": float | None,
     "source": {"doc_id", "passage_id", "text"} | None,
     "passages": [{"doc_id", "passage_id", "text", "score", "rank"}, ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from ..errors import CheckpointError, ConfigError, DataError
from .index import Hit, Index

__all__ = ["EXTRACTIVE_TASK", "MODES", "ExtractiveReader", "GenerativeReader", "ask",
           "check_mode", "join_passages", "load_reader", "rag_input"]

MODES = ("extractive", "generative")
EXTRACTIVE_TASK = "extract"  # the task of an extractive QA model (lmforge.tasks.extractive)


class ExtractiveReader(Protocol):
    """Reads ``{"question", "context"}`` records; predicts ``{"answer", "score"}`` each."""

    def predict(self, inputs: list[dict]) -> list[dict]: ...


class GenerativeReader(Protocol):
    """Writes one output text for each input text."""

    def generate(self, texts: list[str]) -> list[str]: ...


def check_mode(mode: str) -> None:
    """Raise :class:`~lmforge.errors.ConfigError` unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")


def _source(hit: Hit) -> dict:
    return {"doc_id": hit.doc_id, "passage_id": hit.passage_id, "text": hit.text}


def _extract(reader: ExtractiveReader, question: str, hits: list[Hit]) -> tuple[str, float, Hit]:
    """(answer, score, passage) by the rule of the module docstring."""
    preds = reader.predict([{"question": question, "context": h.text} for h in hits])
    if len(preds) != len(hits):
        raise DataError(f"the reader gave {len(preds)} predictions for {len(hits)} passages")
    scored = []
    for i, p in enumerate(preds):
        if not isinstance(p, dict) or not isinstance(p.get("answer"), str) \
                or not isinstance(p.get("score"), (int, float)):
            raise DataError(f"the reader's prediction {i + 1} is not {{'answer': str, "
                            f"'score': number}} (got {p!r:.80})")
        # answers first, then the score; ties go to the better-ranked passage
        scored.append((p["answer"] != "", float(p["score"]), -i, p["answer"]))
    _, score, neg_i, answer = max(scored)
    return answer, score, hits[-neg_i]


def join_passages(passages: Sequence[str]) -> str:
    """The passages as one text, in order, white space collapsed."""
    return " ".join(" ".join(p.split()) for p in passages)


def rag_input(question: str, passages: Sequence[str]) -> str:
    """A generative reader's input: ``question: Q context: P1 P2 ... Pk``, white space
    collapsed (the input :mod:`lmforge.tasks.rag` trains on)."""
    return f"question: {' '.join(question.split())} context: {join_passages(passages)}"


def _generate(reader: GenerativeReader, question: str, hits: list[Hit]) -> tuple[str, Hit]:
    """(answer, source passage) by the rule of the module docstring."""
    out = reader.generate([rag_input(question, [h.text for h in hits])])
    if len(out) != 1 or not isinstance(out[0], str):
        raise DataError(f"the reader gave {out!r:.80} for one input; expected one text")
    answer = out[0].strip()
    return answer, next((h for h in hits if answer and answer in h.text), hits[0])


def ask(index: Index, question: str, reader: ExtractiveReader | GenerativeReader | None = None,
        mode: str = "extractive", k: int = 5) -> dict[str, Any]:
    """Retrieve the ``k`` best passages for ``question`` and let ``reader`` answer from
    them (see the module docstring for the rule and the result)."""
    check_mode(mode)
    method = "predict" if mode == "extractive" else "generate"
    if reader is not None and not callable(getattr(reader, method, None)):
        raise ConfigError(f"a {mode} reader needs a {method}() method "
                          f"({type(reader).__name__} has none)")
    if not isinstance(question, str) or not question.strip():
        raise DataError("the question is empty")
    hits = index.search(question, k)
    out: dict[str, Any] = {"answer": None, "score": None,
                           "source": _source(hits[0]) if hits else None,
                           "passages": [asdict(h) for h in hits]}
    if reader is None:
        return out
    if not hits:  # nothing to read: no answer
        return {**out, "answer": ""}
    if mode == "extractive":
        answer, score, hit = _extract(reader, question, hits)
        return {**out, "answer": answer, "score": score, "source": _source(hit)}
    answer, hit = _generate(reader, question, hits)
    return {**out, "answer": answer, "source": _source(hit)}


def load_reader(run: str | Path, mode: str = "extractive"
                ) -> ExtractiveReader | GenerativeReader:
    """The reader in ``run``: a fine-tuned extractive QA model (``mode="extractive"``) or
    a seq2seq run (``"generative"``); anything else is a one-line
    :class:`~lmforge.errors.CheckpointError`."""
    from ..tasks.seq2seq_predictor import load_seq2seq, seq2seq_task_of

    check_mode(mode)
    if mode == "generative":
        return load_seq2seq(run)
    if seq2seq_task_of(run) is not None:
        raise CheckpointError(f"{run} is a seq2seq run, not an extractive QA model; read "
                              "with it in generative mode")
    from ..tasks import load_task_model

    reader = load_task_model(run)
    if reader.task != EXTRACTIVE_TASK:
        raise CheckpointError(f"{run} holds a {reader.task} model, not an extractive QA "
                              "model")
    return reader
