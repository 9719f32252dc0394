"""The retrieval index: a document store with BM25, an optional dense index, and fusion.

One folder holds it all: ``docs.sqlite`` (documents, passages, the FTS5 index; see
:mod:`.store`) and, unless created with ``dense=None``, ``dense.faiss`` and
``dense.json`` (see :mod:`.dense`)::

    index = Index.create("idx", dense="hnsw")         # all-MiniLM-L6-v2 by default
    index.add(read_docs("docs.jsonl"))
    for hit in index.search("how do transformers attend?", k=3, mode="hybrid"):
        print(hit.rank, hit.doc_id, round(hit.score, 3), hit.text[:60])

Search modes: ``bm25`` (FTS5's BM25), ``dense`` (cosine of sentence embeddings) and
``hybrid``: reciprocal rank fusion (:mod:`.hybrid`) of the best ``max(k, 100)`` passages
of each. Fusion weighs the two rankings alike, so a ranking close to chance pulls the
other one's hits down: a query the encoder cannot read (Chinese, for the English-only
MiniLM; :meth:`.DenseIndex.reads`) is ranked by BM25 alone (an RRF of one ranking). On
the world's Chinese single-hop questions this keeps hybrid's recall@5 at BM25's 0.99
instead of the 0.67 of fusing both (:file:`bench/retrieval.py`). A hit is a passage: its
document id, passage id, text, score (BM25, cosine or RRF) and rank (1 is the best).

**Adding.** :meth:`Index.add` stores the documents and indexes their passages in one
SQLite transaction, then embeds the new passages and saves the dense index. Passage ids
only grow, so the dense index knows what it lacks: the passages with an id above its
largest. If a run stops between the two steps, the next :meth:`Index.open` embeds what
is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io import ensure_writable_dir
from .dense import MANIFEST, DenseIndex, Encoder
from .docs import check_doc
from .hybrid import reciprocal_rank_fusion
from .store import FILE as STORE_FILE
from .store import DocStore

__all__ = ["FUSION_DEPTH", "MODES", "Hit", "Index"]

MODES = ("bm25", "dense", "hybrid")
FUSION_DEPTH = 100


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    doc_id: str
    passage_id: int
    text: str
    score: float
    rank: int


class Index:
    """Documents, their BM25 index and (optionally) their dense index, in one folder."""

    def __init__(self, folder: Path, store: DocStore, dense: DenseIndex | None):
        self.folder, self.store, self.dense = folder, store, dense

    @classmethod
    def create(cls, folder: str | os.PathLike, *,
               encoder: str | os.PathLike | Encoder | None = None,
               dense: str | None = "exact", max_words: int = 128, overlap: int = 32,
               m: int = 32, ef_search: int = 64) -> Index:
        """A new, empty index in ``folder`` (created if needed; one that already holds an
        index is an error). ``dense``: ``"exact"``, ``"hnsw"`` (``m`` links per node,
        ``ef_search`` candidates per query) or None for BM25 alone; ``encoder``: None or
        ``"minilm"`` (all-MiniLM-L6-v2), a model folder or an object with ``encode``.
        Passages hold at most ``max_words`` words, windows overlap by ``overlap``."""
        folder = Path(folder)
        if (folder / STORE_FILE).exists():
            raise DataError(f"{folder} already holds an index; open it with Index.open")
        ensure_writable_dir(folder)
        if dense is None:
            (folder / MANIFEST).unlink(missing_ok=True)  # left by a create that failed
            vectors = None
        else:
            vectors = DenseIndex.create(folder, encoder, dense, m=m, ef_search=ef_search)
        # docs.sqlite appears last: a folder holds an index only when it is complete.
        return cls(folder, DocStore.create(folder, max_words=max_words, overlap=overlap),
                   vectors)

    @classmethod
    def open(cls, folder: str | os.PathLike, *,
             encoder: str | os.PathLike | Encoder | None = None) -> Index:
        """The index in ``folder``. ``encoder`` (for a dense index) is checked against
        the one it was built with; None loads that one when a dense search needs it."""
        folder = Path(folder)
        store = DocStore.open(folder)
        try:
            if not (folder / MANIFEST).is_file():
                if encoder is not None:
                    raise ConfigError(f"{folder} has no dense index; open it without encoder=")
                return cls(folder, store, None)
            index = cls(folder, store, DenseIndex.open(folder, encoder))
            index._embed_missing()
        except BaseException:
            store.close()
            raise
        return index

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """The number of documents."""
        return self.store.size()[0]

    def add(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Add documents (mappings with ``id``, ``text`` and optional ``title``, ``lang``,
        other fields kept as metadata); the number that were new. Every document is checked
        before anything is written. An id already stored with the same content is skipped;
        with other content it is a :class:`DataError` and nothing is added."""
        checked = [check_doc(d, f"document {i}") for i, d in enumerate(docs, 1)]
        new = self.store.add(checked)
        self._embed_missing()
        return new

    def _embed_missing(self) -> None:
        """Embed the passages the dense index does not have yet."""
        if self.dense is not None:
            todo = self.store.indexed_after(self.dense.last_id)
            if todo:
                self.dense.add([pid for pid, _ in todo], [text for _, text in todo])

    def document(self, doc_id: str) -> dict | None:
        """The stored document ``doc_id`` (id, title, text, lang, metadata), or None."""
        return self.store.document(doc_id)

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[Hit]:
        """The ``k`` best passages for ``query``, best first. ``mode``: ``"bm25"``,
        ``"dense"`` or ``"hybrid"``; None is hybrid when the index has a dense part, else
        bm25."""
        if not isinstance(query, str) or not query.strip():
            raise DataError("the query is empty")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an integer >= 1 (got {k!r})")
        mode = mode or ("bm25" if self.dense is None else "hybrid")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        if mode != "bm25" and self.dense is None:
            raise ConfigError(f"mode {mode!r} needs a dense index; this one was created "
                              "with dense=None")
        if mode == "bm25":
            ranked = self.store.bm25(query, k)
        elif mode == "dense":
            ranked = self.dense.search(query, k)
        else:
            depth = max(k, FUSION_DEPTH)
            rankings = [[pid for pid, _ in self.store.bm25(query, depth)]]
            if self.dense.reads(query):
                rankings.append([pid for pid, _ in self.dense.search(query, depth)])
            ranked = reciprocal_rank_fusion(rankings)[:k]
        rows = self.store.passages([pid for pid, _ in ranked])
        return [Hit(rows[pid][0], pid, rows[pid][1], score, rank)
                for rank, (pid, score) in enumerate(ranked, 1)]
