"""Embeddings: contextual sentence embeddings from BERT-family encoders.

>>> from lmforge.embeddings import embed_text
>>> vectors = embed_text(["你好，世界", "Hello, world"])   # doctest: +SKIP
"""

from .contextual import SentenceEncoder, default_model_path, embed_text, pool

__all__ = ["embed_text", "SentenceEncoder", "default_model_path", "pool"]
