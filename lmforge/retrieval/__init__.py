"""Retrieval: find the passages that answer a query, by keywords, by meaning, or both.

- :mod:`.docs`: documents and their readers (JSONL, a folder of .txt files)
- :mod:`.passages`: documents cut into passages of at most N words
- :mod:`.store`: SQLite store with an FTS5 index ranked by BM25 (jieba for Chinese)
- :mod:`.dense`: sentence-encoder vectors in a faiss index (exact or HNSW)
- :mod:`.hybrid`: reciprocal rank fusion of rankings
- :mod:`.index`: :class:`Index`, the facade over all of them

BM25 and the tokenizers are SQLite's and jieba's, the vector search is faiss's; what is
written here is the glue, passage splitting and fusion. Metrics (recall@k, MRR) are in
:mod:`lmforge.eval.retrieval`.
"""

from .docs import read_docs
from .hybrid import reciprocal_rank_fusion
from .index import Hit, Index

__all__ = ["Hit", "Index", "read_docs", "reciprocal_rank_fusion"]
