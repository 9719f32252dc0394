r"""New vocabulary entries for the characters a pretrained WordPiece vocabulary lacks.

A BERT tokenizer splits Chinese text into one word per character (its normalizer's
``handle_chinese_chars``), and a character missing from the vocabulary becomes
``[UNK]``: all-MiniLM-L6-v2's English vocabulary lacks 425 of the 525 Chinese characters
of the world's QA questions and pages (68% of the Chinese characters they use), so most
names and answers read as runs of the same ``[UNK]``. This module gives each such
character its own token:

* **the characters**: the one-character words of the texts (after the tokenizer's
  normalizer and pre-tokenizer) whose encoding is ``[UNK]``, in code-point order;
* **the tokenizer**: the WordPiece vocabulary gains them as whole words, ids
  :math:`V, V + 1, \dots` (the saved ``tokenizer.json`` is an ordinary BERT tokenizer
  that ``transformers`` loads);
* **the embeddings**: the word table :math:`E \in \mathbb{R}^{V \times d}` gains one
  row per character, drawn from the per-dimension Gaussian of the rows of the
  vocabulary's one-character tokens (not ``##`` pieces nor special tokens):
  :math:`e_{new} \sim \mathcal{N}(\mu, \mathrm{diag}(\sigma^2))`, with :math:`\mu,
  \sigma` the mean and standard deviation of those rows. A new character then looks like
  a character to the first layer, and distinct characters stay apart (the rows are
  independent draws); fine-tuning moves them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from ..errors import ConfigError
from ..tokenize import Tokenizer

__all__ = ["one_character_words", "unknown_characters", "add_characters"]


def one_character_words(tokenizer: Tokenizer, texts: Iterable[str]) -> set[str]:
    """The one-character words of ``texts`` as the tokenizer's normalizer and
    pre-tokenizer cut them."""
    hf = tokenizer.hf
    words: set[str] = set()
    for text in texts:
        norm = hf.normalizer.normalize_str(text) if hf.normalizer else text
        pieces = hf.pre_tokenizer.pre_tokenize_str(norm) if hf.pre_tokenizer else [(norm, None)]
        words.update(w for w, _ in pieces if len(w) == 1)
    return words


def unknown_characters(tokenizer: Tokenizer, texts: Iterable[str]) -> list[str]:
    """The one-character words of ``texts`` that the vocabulary lacks, in code-point
    order (none for a tokenizer without an unknown token)."""
    if tokenizer.unk_id is None:
        return []
    vocab = tokenizer.get_vocab()
    return sorted(w for w in one_character_words(tokenizer, texts) if w not in vocab)


def _word_table(encoder: nn.Module, vocab_size: int) -> nn.Embedding:
    tables = [m for m in encoder.modules()
              if isinstance(m, nn.Embedding) and m.num_embeddings == vocab_size]
    if len(tables) != 1:
        raise ConfigError(f"the backbone has {len(tables)} embedding tables of the "
                          f"tokenizer's {vocab_size} rows; new characters need exactly one")
    return tables[0]


def add_characters(encoder: nn.Module, encoder_config: dict, tokenizer: Tokenizer,
                   texts: list[str], *, seed: int = 0) -> tuple[Tokenizer, list[str]]:
    """Give the unknown characters of ``texts`` their own tokens and embedding rows
    (module docstring): the encoder's word table and ``encoder_config["vocab_size"]``
    grow in place; returns the grown tokenizer (``tokenizer`` itself when nothing is
    missing) and the characters added."""
    chars = unknown_characters(tokenizer, texts)
    if not chars:
        return tokenizer, []
    spec = json.loads(tokenizer.hf.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise ConfigError(f"adding characters needs a WordPiece vocabulary, not "
                          f"{spec['model']['type']}")
    V = tokenizer.vocab_size
    table = _word_table(encoder, V)
    spec["model"]["vocab"].update({c: V + k for k, c in enumerate(chars)})
    grown = Tokenizer(HFTokenizer.from_str(json.dumps(spec)), tokenizer.kind,
                      tokenizer.special_tokens, tokenizer.config())
    with torch.no_grad():
        known = sorted(i for t, i in tokenizer.get_vocab().items()
                       if len(t) == 1 and i not in tokenizer.special_ids)
        rows = table.weight[known] if len(known) > 1 else table.weight
        mu, sigma = rows.mean(0), rows.std(0)
        g = torch.Generator().manual_seed(seed)
        new = mu + sigma * torch.randn(len(chars), table.embedding_dim, generator=g)
        table.weight = nn.Parameter(torch.cat([table.weight, new.to(table.weight.dtype)]))
    table.num_embeddings = V + len(chars)
    encoder_config["vocab_size"] = V + len(chars)
    if hasattr(getattr(encoder, "config", None), "vocab_size"):
        encoder.config.vocab_size = V + len(chars)
    return grown, chars
