"""Chinese word segmentation with jieba, loaded once and quietly.

jieba's dictionary load (about a second) happens on the first call; its log lines
("Building prefix dict ...") are silenced so progress bars and CLI output stay clean.
Used by whole-word masking (:mod:`lmforge.train.mlm`) and the word-embedding tokeniser
(:mod:`lmforge.embeddings.vocab`).
"""

from __future__ import annotations

import logging
from functools import lru_cache

__all__ = ["jieba_words"]


@lru_cache(maxsize=1)
def _tokenizer():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer()
    tok.initialize()
    return tok


def jieba_words(text: str) -> list[str]:
    """jieba's segmentation of ``text`` (precise mode with the HMM for unknown words);
    the words concatenate back to ``text``."""
    return _tokenizer().lcut(text)


def jieba_search_words(text: str, hmm: bool = True) -> list[str]:
    """jieba's search-engine segmentation: the precise words plus the shorter words inside
    long ones (北京大学 -> 北京, 大学, 北京大学), so a query word matches inside a compound.
    ``hmm=False`` leaves out the HMM that guesses words missing from the dictionary, so an
    unknown name splits into the same characters in any context."""
    return _tokenizer().lcut_for_search(text, HMM=hmm)
