"""Fine-tuned task runs as served models: each serves the route of its task.

``lmforge serve sent=runs/classify-sentiment mt=runs/translate-transformer-en-zh`` serves
task runs beside language models and encoders. :func:`load_task` tells a task run from
the rest by what the task loaders read, without loading anything else:

- a run (or checkpoint) whose ``config.yaml`` names ``task: translate``, ``summarize`` or
  ``answer`` is an encoder-decoder (:func:`lmforge.tasks.seq2seq_predictor.load_seq2seq`);
- a model folder, or a run's best checkpoint, whose ``config.json`` says ``arch: task``
  (:func:`lmforge.tasks.is_task_model`), or a scikit-learn baseline run (``classical.json``),
  is an encoder with a task head (:func:`lmforge.tasks.load_task_model`).

The served model's ``task`` names its route (:data:`TASK_OF`): ``classify``, ``ner``,
``relations``, ``qa`` (extractive and generative alike), ``translate``, ``summarize``.

A generative reader (``task: answer``) is a :class:`ReaderModel`: it holds its run's
index of passages (:class:`RunIndex`), opened by the first request that retrieves and
kept open for the next ones, and closed with the model (at shutdown or unload).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .models import MINILM, ModelSpec, ServedModel

if TYPE_CHECKING:
    from ..privacy.keys import KeySource
    from ..retrieval.index import Index
    from ..tasks.seq2seq_config import RetrievalConfig

#: the task of a predictor (``TaskPredictor.task`` or a seq2seq recipe's ``task``) -> the
#: served task, which names its route ``/v1/<task>``
TASK_OF = {"classify": "classify", "tag": "ner", "relate": "relations", "extract": "qa",
           "translate": "translate", "summarize": "summarize", "answer": "qa"}


class RunIndex:
    """A run's index of passages (``folder``, searched as the recipe's retrieval ``cfg``
    says), opened once and reused by every request.

    **Changes.** Before each search the index files' ``(name, mtime_ns, size)`` are read
    (stat calls only); when they differ from those seen at the last open, the index is
    reopened, so the passages a later ``lmforge qa index`` adds (its writes are atomic)
    are searched by the next request.

    **Threads.** An SQLite connection belongs to the thread that made it (``sqlite3``'s
    ``check_same_thread``), and the server answers requests on a pool of threads; so one
    thread of its own opens, searches and closes the index, and the searches are one at a
    time."""

    def __init__(self, folder: Path, cfg: RetrievalConfig):
        self.folder, self.cfg = folder, cfg
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lmforge-index")
        self._index: Index | None = None
        self._stamp: tuple | None = None

    def stamp(self) -> tuple:
        """``(name, mtime_ns, size)`` of each file of the index present (the folder's
        layout is in :mod:`lmforge.retrieval.index`)."""
        from ..retrieval.dense import FILE, MANIFEST
        from ..retrieval.store import FILE as STORE_FILE

        out = []
        for name in (STORE_FILE, FILE, MANIFEST):
            try:
                st = (self.folder / name).stat()
            except FileNotFoundError:
                continue
            out.append((name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _current(self) -> Index:
        """The open index, (re)opened when its files changed (on the index's thread)."""
        from ..retrieval.index import Index

        stamp = self.stamp()  # before opening: a change while it opens reopens next time
        if self._index is None or stamp != self._stamp:
            self._close()
            self._index, self._stamp = Index.open(self.folder), stamp
        return self._index

    def retrieve(self, records: Sequence[dict], key: KeySource | None) -> list[dict]:
        """:func:`lmforge.tasks.rag.rag_records` of ``records`` from the index as it is on
        disk now; ``key`` opens an encrypted index (in memory)."""
        from ..privacy.encrypted_io import using_key
        from ..tasks.rag import rag_records

        def work() -> list[dict]:
            with using_key(key):
                return rag_records(records, self._current(), self.cfg)

        return self._thread.submit(work).result()

    def _close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def close(self) -> None:
        """Close the index (on its thread) and end the thread."""
        self._thread.submit(self._close)
        self._thread.shutdown()


@dataclass
class ReaderModel(ServedModel):
    """A served generative reader with its run's index of ``passages``."""

    passages: RunIndex | None = None

    def close(self) -> None:
        super().close()
        if self.passages is not None:
            self.passages.close()


def _is_classical(path: Path) -> bool:
    """Is ``path`` a scikit-learn baseline run (what :func:`load_task_model` reads)?"""
    from ..tasks.predictor import CLASSICAL_DIR

    return any((folder / "classical.json").is_file() for folder in (path, path / CLASSICAL_DIR))


def load_task(spec: ModelSpec) -> ServedModel | None:
    """``spec``'s task run as a served model with its predictor (module docstring); None
    when ``spec.path`` is not a task run, so the caller loads it as a language model or an
    encoder."""
    from ..tasks import is_task_model, load_task_model
    from ..tasks.seq2seq_predictor import load_seq2seq, seq2seq_task_of

    if spec.path == MINILM:
        return None
    seq2seq = seq2seq_task_of(spec.path)
    if seq2seq is not None:
        predictor = load_seq2seq(spec.path)
        task = seq2seq
    elif is_task_model(spec.path) or _is_classical(Path(spec.path)):
        predictor = load_task_model(spec.path)
        task = predictor.task
    else:
        return None
    if task == "answer":
        kind, extra = ReaderModel, {"passages": RunIndex(predictor.index_dir,
                                                         predictor.retrieval)}
    else:
        kind, extra = ServedModel, {}
    return kind(spec.name, spec.path, task=TASK_OF[task], predictor=predictor,
                tokenizer=getattr(predictor, "tokenizer", None), **extra)
