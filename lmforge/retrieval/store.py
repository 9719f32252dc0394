r"""The document store: documents, their passages and an FTS5 keyword index in one SQLite file.

``docs.sqlite`` holds four tables: ``meta`` (format and passage options), ``docs`` (id,
title, text, lang, metadata JSON), ``passages`` (id, doc_id, ord, text, tokens) and
``passages_fts``, an FTS5 index over ``passages.tokens`` (an external-content table: the
token text is stored once, in ``passages``). Passages are cut by
:func:`~lmforge.retrieval.passages.split_passages`; a passage is indexed as the
document's title, a newline and the passage, so every passage carries its title.

**Tokens.** FTS5's tokenizer is ``porter unicode61 remove_diacritics 2``: unicode61 splits
at every character that is not a letter or a digit and folds case and diacritics, and
the Porter stemmer maps English inflections to one stem (*trains*, *training* ->
*train*). unicode61 would keep a run of Chinese ideographs as one token, so text with an
ideograph is first segmented by jieba in *search mode* (the precise-mode words plus the
dictionary words of two and three characters inside them: 人工智能 -> 人工, 智能,
人工智能), and its words joined by spaces are stored in ``tokens``; the query is
segmented the same way. Search mode lets a query word match inside a longer document
word. Whether jieba runs is decided by the text itself, never by a document's ``lang``
(which is stored and shown only), since a query has no ``lang``.

jieba runs **without its HMM**, the model that guesses words missing from the dictionary
(mostly names) from their neighbours: a short query gives it other neighbours than the
document, so one name is cut two ways and the query's term matches nothing (the page
says 曹阳 曾经..., the question 曹阳为哪家单位工作? is cut 曹阳为 / 哪家 / 单位 / 工作). Without the
HMM a name the dictionary lacks falls apart into its characters, alike in every text, and
BM25 matches it character by character. On the world's Chinese QA questions
(:file:`bench/retrieval.py`) this raised BM25's recall@1 / recall@5 of the subject's page
from 0.936 / 0.984 to 0.948 / 0.992 (validation split) and from 0.873 / 0.955 to 0.932 /
0.984 (test and test_unseen).

**Ranking.** FTS5's built-in BM25 (``ORDER BY rank``) with :math:`k_1 = 1.2, b = 0.75`,
over the :math:`N` passages of average length :math:`\overline{dl}` tokens:

.. math::

    \text{BM25}(D, Q) = \sum_{q \in Q} \text{IDF}(q)\,
        \frac{f(q, D)\,(k_1 + 1)}{f(q, D) + k_1 \left(1 - b + b\,|D| / \overline{dl}\right)},
    \qquad \text{IDF}(q) = \ln \frac{N - n(q) + 0.5}{n(q) + 0.5}

where :math:`f(q, D)` counts :math:`q` in passage :math:`D`, :math:`|D|` is its length in
tokens and :math:`n(q)` the number of passages holding :math:`q`; an IDF :math:`\le 0`
(a term in half the passages or more) is replaced by :math:`10^{-6}`. FTS5's ``bm25()``
returns :math:`-\text{BM25}`; :meth:`DocStore.bm25` reports :math:`\text{BM25}`.

**Queries** are never parsed as FTS5 syntax: the segmented query is cut into its letter
and digit runs, each distinct (lowercased) run is quoted (a string in double quotes is
plain text to FTS5), and the quoted terms are joined by ``OR``. Two query words with one
stem (*train*, *trains*) are two terms, so that stem counts twice, like a query term
frequency of 2. Quotes, ``*``, ``-``, ``:``, ``^``,
parentheses and the words AND/OR/NOT/NEAR are therefore just text.

**Duplicate ids.** Re-adding a document that is already stored with the same title, text,
lang and metadata does nothing; the same id with other content raises
:class:`~lmforge.errors.DataError` (ids are permanent: build a new index to change a
document). An :meth:`DocStore.add` is one transaction: all its documents or none.

**Encryption at rest.** A store created while a key is active
(:func:`lmforge.privacy.encrypted_io.using_key`, the commands' ``--key-file``) lives in
memory (``sqlite3.connect(":memory:")``) and is written to ``docs.sqlite`` as the
database's bytes (``Connection.serialize``), AES-256-GCM encrypted
(:mod:`lmforge.privacy.crypto`) and atomically, when it is created and after each
:meth:`DocStore.add` that stored a document. Opening an encrypted file decrypts it in
memory and loads it with ``Connection.deserialize``, so no plaintext page reaches the
disk (nor a journal); the whole database is held in memory. Without a key an encrypted
store is a one-line :class:`~lmforge.errors.ConfigError`, a wrong key a one-line
:class:`~lmforge.errors.CheckpointError`. A plain file stays an SQLite database on
disk, even when a key is active; a store keeps its form.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from ..privacy.crypto import is_encrypted
from ..privacy.encrypted_io import active_key, read_bytes, write_bytes_as
from ..privacy.keys import KeySource
from .docs import Doc
from .passages import HAS_CJK, check_passage_options, split_passages

__all__ = ["DocStore", "match_expression", "segment"]

FILE = "docs.sqlite"
FORMAT = "2"  # 2: Chinese segmented without the HMM
TOKENIZER = "porter unicode61 remove_diacritics 2"
_TERM = re.compile(r"[^\W_]+")  # a run of letters and digits: what unicode61 keeps

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL,
                   lang TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE passages (id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES docs(id),
                       ord INTEGER NOT NULL, text TEXT NOT NULL, tokens TEXT NOT NULL);
CREATE VIRTUAL TABLE passages_fts USING fts5(tokens, content='passages',
                                             content_rowid='id', tokenize='{TOKENIZER}');
"""


def segment(text: str) -> str:
    """``text`` as FTS5 should see it: jieba's search-mode words (no HMM) joined by spaces
    when it holds a CJK ideograph, else unchanged."""
    if not HAS_CJK.search(text):
        return text
    from ..tokenize.zh import jieba_search_words

    return " ".join(w for w in jieba_search_words(text, hmm=False)
                    if not w.isspace())


def match_expression(query: str) -> str:
    """The FTS5 MATCH expression for a user query: its distinct terms, quoted, ORed."""
    terms = dict.fromkeys(t.lower() for t in _TERM.findall(segment(query)))
    return " OR ".join(f'"{t}"' for t in terms)


def _indexed_text(title: str, text: str) -> str:
    """What a passage is indexed as: the document's title, a newline, the passage."""
    return f"{title}\n{text}" if title else text


class DocStore:
    """Documents, passages and their FTS5 index in ``folder/docs.sqlite``; ``key``: the
    key it is encrypted with (then ``conn`` is an in-memory copy), None for a plain file."""

    def __init__(self, conn: sqlite3.Connection, path: Path, max_words: int, overlap: int,
                 key: KeySource | None = None):
        self.conn, self.path = conn, path
        self.max_words, self.overlap = max_words, overlap
        self.key = key

    @classmethod
    def create(cls, folder: str | os.PathLike, *, max_words: int = 128,
               overlap: int = 32) -> DocStore:
        """A new, empty store, encrypted when a key is active; the file appears (renamed
        into place) only when complete."""
        check_passage_options(max_words, overlap)
        path = Path(folder) / FILE
        if path.exists():
            raise DataError(f"{path.parent} already holds an index; open it with Index.open")
        key = active_key()
        conn = sqlite3.connect(":memory:")
        try:
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("format", FORMAT), ("tokenizer", TOKENIZER),
                              ("max_words", str(max_words)), ("overlap", str(overlap))])
            conn.commit()
            write_bytes_as(path, conn.serialize(), key)
        except BaseException:
            conn.close()
            raise
        if key is not None:
            return cls(conn, path, max_words, overlap, key)
        conn.close()
        return cls.open(folder)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> DocStore:
        """The store in ``folder`` (an encrypted one needs the active key); a folder
        without one, or a corrupt file, is a :class:`DataError`."""
        path = Path(folder) / FILE
        if not path.is_file():
            raise DataError(f"{Path(folder)} is not a retrieval index (no {FILE}); "
                            "create one with Index.create")
        encrypted = is_encrypted(path)
        data = read_bytes(path) if encrypted else None  # all verified, or a one-line error
        key = active_key() if encrypted else None
        conn = sqlite3.connect(":memory:" if encrypted else path)
        try:
            if data is not None:
                conn.deserialize(data)
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("format") != FORMAT:
                raise DataError(f"{path} has index format {meta.get('format')!r}; "
                                f"this lmforge reads format {FORMAT}")
            return cls(conn, path, int(meta["max_words"]), int(meta["overlap"]), key)
        except (sqlite3.DatabaseError, KeyError, ValueError) as e:
            conn.close()
            raise DataError(f"{path} is corrupt: {e}") from None
        except DataError:
            conn.close()
            raise

    def _save(self) -> None:
        """Write the in-memory database to ``docs.sqlite``, encrypted, atomically (a plain
        store commits to its file itself)."""
        if self.key is not None:
            write_bytes_as(self.path, self.conn.serialize(), self.key)

    def close(self) -> None:
        self.conn.close()

    def add(self, docs: Sequence[Doc]) -> int:
        """Store ``docs`` and index their passages, in one transaction; the number of
        documents that were new (see *Duplicate ids* in the module docstring)."""
        from tqdm.auto import tqdm

        new = 0
        with self.conn:
            for doc in tqdm(docs, desc="index documents", unit=" docs", disable=None):
                row = self.conn.execute("SELECT title, text, lang, metadata FROM docs "
                                        "WHERE id = ?", (doc.id,)).fetchone()
                if row is not None:
                    if row != (doc.title, doc.text, doc.lang, doc.metadata):
                        raise DataError(f"document {doc.id!r} is already in the index with "
                                        "other content; ids are permanent (build a new index "
                                        "to change a document)")
                    continue
                self.conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?)",
                                  (doc.id, doc.title, doc.text, doc.lang, doc.metadata))
                for ord_, text in enumerate(split_passages(doc.text, self.max_words,
                                                           self.overlap)):
                    tokens = segment(_indexed_text(doc.title, text))
                    pid = self.conn.execute("INSERT INTO passages (doc_id, ord, text, tokens) "
                                            "VALUES (?, ?, ?, ?)",
                                            (doc.id, ord_, text, tokens)).lastrowid
                    self.conn.execute("INSERT INTO passages_fts (rowid, tokens) VALUES (?, ?)",
                                      (pid, tokens))
                new += 1
        if new:
            self._save()
        return new

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best passages for ``query`` as ``(passage id, BM25)``, best first; ties
        in passage-id order."""
        expr = match_expression(query)
        if not expr:
            return []
        rows = self.conn.execute("SELECT rowid, rank FROM passages_fts WHERE passages_fts "
                                 "MATCH ? ORDER BY rank, rowid LIMIT ?", (expr, k))
        return [(pid, -rank) for pid, rank in rows]

    def passages(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Passage id -> (document id, passage text), for the ``ids`` that exist."""
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT id, doc_id, text FROM passages WHERE id IN ({marks})",
                                 list(ids))
        return {pid: (doc_id, text) for pid, doc_id, text in rows}

    def indexed_after(self, pid: int) -> list[tuple[int, str]]:
        """``(passage id, indexed text)`` of the passages with an id above ``pid``, in id
        order: what a dense index that has seen up to ``pid`` still has to encode."""
        rows = self.conn.execute("SELECT p.id, d.title, p.text FROM passages p JOIN docs d "
                                 "ON d.id = p.doc_id WHERE p.id > ? ORDER BY p.id", (pid,))
        return [(i, _indexed_text(title, text)) for i, title, text in rows]

    def document(self, doc_id: str) -> dict | None:
        """The stored document ``doc_id`` (id, title, text, lang, metadata), or None."""
        row = self.conn.execute("SELECT id, title, text, lang, metadata FROM docs WHERE id = ?",
                                (doc_id,)).fetchone()
        if row is None:
            return None
        doc_id, title, text, lang, metadata = row
        return {"id": doc_id, "title": title, "text": text, "lang": lang,
                "metadata": json.loads(metadata)}

    def size(self) -> tuple[int, int]:
        """(number of documents, number of passages)."""
        return self.conn.execute("SELECT (SELECT COUNT(*) FROM docs), "
                                 "(SELECT COUNT(*) FROM passages)").fetchone()
