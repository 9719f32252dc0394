"""Embeddings: contextual sentence embeddings from BERT-family encoders.

>>> from lmforge.embeddings import embed_text
>>> vectors = embed_text(["你好，世界", "Hello, world"])   # doctest: +SKIP
"""

from .contextual import SentenceEncoder, default_model_path, embed_text, pool

__all__ = ["embed_text", "SentenceEncoder", "default_model_path", "pool"]

from .analogies import format_analogies, planted_analogies, word_classes, world_words
from .evaluate import (
    class_purity,
    evaluate_analogies,
    evaluate_similarity,
    read_analogies,
    read_similarity,
)
from .fasttext import FastText, FastTextConfig, FastTextKeyedVectors, train_fasttext
from .glove import GloVe, GloVeConfig
from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError, Vocab, WordNotInVocabulary, tokenize
from .word2vec import Word2Vec, Word2VecConfig, train_word2vec

__all__ += [
    "EmbeddingError", "GloVe", "GloVeConfig", "KeyedVectors", "Vocab", "Word2Vec", "Word2VecConfig",
    "WordNotInVocabulary", "class_purity", "evaluate_analogies", "evaluate_similarity",
    "format_analogies", "planted_analogies", "read_analogies", "read_similarity",
    "tokenize", "train_word2vec", "word_classes", "world_words",
]
__all__ += ["FastText", "FastTextConfig", "FastTextKeyedVectors", "train_fasttext"]
