"""Tokenizers: character-level, byte-level BPE and WordPiece, through Hugging Face
``tokenizers``, behind one :class:`Tokenizer` class that also loads any Hugging Face
``tokenizer.json`` or model folder.

>>> from lmforge.tokenize import Tokenizer, train_tokenizer, SPECIAL_ROLES
>>> tok = train_tokenizer("bpe", texts=["你好, world"] * 10, vocab_size=300,
...                       show_progress=False)
>>> tok.decode(tok.encode("你好, world!"))
'你好, world!'
"""

from .tokenizer import DEFAULT_SPECIAL_TOKENS, KINDS, SPECIAL_ROLES, Tokenizer
from .train import TRAINABLE_KINDS, check_vocab_size, train_tokenizer

__all__ = ["Tokenizer", "train_tokenizer", "SPECIAL_ROLES", "DEFAULT_SPECIAL_TOKENS", "KINDS",
           "TRAINABLE_KINDS", "check_vocab_size"]
