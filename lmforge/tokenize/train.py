"""Train ``char``, byte-level ``bpe`` and ``wordpiece`` tokenizers with Hugging Face
``tokenizers`` (its Rust trainers, with their progress bars).

========== ============================================================================
kind       pipeline
========== ============================================================================
char       every code point is a token: a ``WordLevel`` model over a pre-tokenizer that
           isolates each character, and a ``Fuse`` decoder that joins them with nothing
           in between (exact round-trip of in-vocabulary text). ``vocab_size`` caps the
           vocabulary: the most frequent characters are kept (ties by code point), the
           rest encode to ``<|unk|>``.
bpe        GPT-2 byte-level BPE: ``ByteLevel`` pre-tokenizer (``add_prefix_space=False``,
           GPT-2 split regex), ``ByteLevel`` decoder, and all 256 byte symbols in the
           initial alphabet, so any text encodes without an unknown token and
           ``decode(encode(s)) == s`` for every string ``s``.
wordpiece  BERT: ``BertNormalizer`` (case kept, accents kept, each CJK character split off),
           ``BertPreTokenizer`` (white space and punctuation), ``WordPiece`` model with
           ``##`` continuation and the ``WordPiece`` decoder. Decoding is not exact (it
           re-spaces punctuation); spaces between CJK characters are removed. The text
           is read twice (a one-shot iterator is kept in memory), so that training is
           deterministic (:func:`_continuations`).
========== ============================================================================
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as HFTokenizer

from ..errors import ConfigError, DataError
from .tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

TRAINABLE_KINDS = ("char", "bpe", "wordpiece")


def _special_list(kind: str, extra: Iterable[str]) -> list[str]:
    specials = list(DEFAULT_SPECIAL_TOKENS[kind].values())
    for tok in extra:
        if not isinstance(tok, str) or not tok:
            raise ConfigError(f"tokenizer.special_tokens: {tok!r} is not a non-empty string")
        if tok not in specials:
            specials.append(tok)
    return specials


def check_vocab_size(kind: str, vocab_size: int, n_special: int) -> None:
    """Raise :class:`ConfigError` when ``vocab_size`` cannot hold the fixed symbols."""
    if kind == "bpe":
        need = n_special + 256
        what = f"the {n_special} special tokens and 256 byte symbols"
    else:
        need = n_special + 1
        what = f"the {n_special} special tokens and at least one {kind} symbol"
    if vocab_size < need:
        raise ConfigError(f"tokenizer.vocab_size={vocab_size} is too small: {what} need at "
                          f"least {need}")


def _pipeline(kind: str) -> HFTokenizer:
    """The untrained tokenizer of ``kind``: model, normalizer, pre-tokenizer, decoder."""
    roles = DEFAULT_SPECIAL_TOKENS[kind]
    if kind == "char":
        tk = HFTokenizer(models.WordLevel(unk_token=roles["unk"]))
        tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tk.decoder = decoders.Fuse()
    elif kind == "bpe":
        tk = HFTokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tk.decoder = decoders.ByteLevel()
    else:  # wordpiece
        tk = HFTokenizer(models.WordPiece(unk_token=roles["unk"], continuing_subword_prefix="##"))
        tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=False, lowercase=False)
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece(prefix="##")
    return tk


def _trainer(kind: str, specials: list[str], vocab_size: int, min_frequency: int,
             show_progress: bool) -> trainers.Trainer:
    kw = dict(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
              show_progress=show_progress)
    if kind == "char":
        return trainers.WordLevelTrainer(**kw)
    if kind == "bpe":
        return trainers.BpeTrainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **kw)
    return trainers.WordPieceTrainer(continuing_subword_prefix="##", **kw)


def _continuations(tk: HFTokenizer, texts: Iterable[str]) -> list[str]:
    """``##c`` for every character ``c`` that occurs inside a word (not first), sorted.

    The Rust trainer creates these tokens while iterating over a hash map of words, so
    their ids, which break ties between equally frequent merges, change from process to
    process and so does the learned vocabulary (huggingface/tokenizers#1794). Declaring
    them up front, in sorted order, fixes their ids; the trainer would create every one
    of them anyway."""
    inner: set[str] = set()
    for text in texts:
        for word, _ in tk.pre_tokenizer.pre_tokenize_str(tk.normalizer.normalize_str(text)):
            inner.update(word[1:])
    return ["##" + c for c in sorted(inner)]


def _unmark_special(tk: HFTokenizer, tokens: list[str]) -> HFTokenizer:
    """``tk`` with ``tokens`` kept in the vocabulary but no longer added special tokens."""
    drop = set(tokens)
    spec = json.loads(tk.to_str())
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["content"] not in drop]
    return HFTokenizer.from_str(json.dumps(spec))


def _iter_files(files: Sequence[str | os.PathLike]) -> Iterator[str]:
    from ..data.readers import iter_documents

    for doc in iter_documents(list(files)):
        yield doc.text


def train_tokenizer(kind: str, texts: Iterable[str] | None = None,
                    files: Sequence[str | os.PathLike] | None = None, vocab_size: int = 4096,
                    min_frequency: int = 2, special_tokens: Iterable[str] = (),
                    show_progress: bool = True) -> Tokenizer:
    """Train a ``char``, ``bpe`` or ``wordpiece`` tokenizer on ``texts`` or ``files``.

    ``files`` are read with :func:`lmforge.data.readers.iter_documents` (``.txt`` lines,
    ``.jsonl`` field ``text``, ``.csv``/``.parquet`` column ``text``). The default special
    tokens get ids 0-4 (see :data:`~lmforge.tokenize.tokenizer.DEFAULT_SPECIAL_TOKENS`);
    ``special_tokens`` adds more after them. ``vocab_size`` counts the special tokens (and
    the 256 byte symbols of ``bpe``); a trained vocabulary may end up smaller when the text
    has fewer symbols or merges than that.
    """
    if kind not in TRAINABLE_KINDS:
        raise ConfigError(f"tokenizer.kind={kind!r} is not one of {', '.join(TRAINABLE_KINDS)}")
    if (texts is None) == (files is None):
        raise ConfigError("train_tokenizer: give exactly one of texts= or files=")
    if isinstance(special_tokens, str):
        special_tokens = [special_tokens]
    specials = _special_list(kind, special_tokens)
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ConfigError(f"tokenizer.vocab_size={vocab_size!r} must be an integer")
    check_vocab_size(kind, vocab_size, len(specials))
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise ConfigError(f"tokenizer.min_frequency={min_frequency!r} must be an integer >= 0")

    if isinstance(texts, str):
        texts = [texts]
    tk = _pipeline(kind)
    inner: list[str] = []
    if kind == "wordpiece":  # two passes: the inner characters, then the training
        if files is None and iter(texts) is texts:
            texts = list(texts)  # a one-shot iterator
        inner = _continuations(tk, _iter_files(files) if files is not None else texts)
    source = _iter_files(files) if files is not None else iter(texts)
    seen = {"n": 0}

    def counted() -> Iterator[str]:
        for t in source:
            if t:
                seen["n"] += 1
                yield t

    # The Rust trainer's bars only print blank lines when stderr is not a terminal.
    bars = show_progress and sys.stderr.isatty()
    trainer = _trainer(kind, specials + [t for t in inner if t not in specials], vocab_size,
                       min_frequency, bars)
    tk.train_from_iterator(counted(), trainer=trainer)
    if seen["n"] == 0:
        raise DataError("no text to train the tokenizer on (the input is empty)")
    if inner:
        tk = _unmark_special(tk, [t for t in inner if t not in specials])
    if kind == "wordpiece":
        r = DEFAULT_SPECIAL_TOKENS["wordpiece"]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{r['bos']} $A {r['eos']}", pair=f"{r['bos']} $A {r['eos']} $B:1 {r['eos']}:1",
            special_tokens=[(r["bos"], tk.token_to_id(r["bos"])),
                            (r["eos"], tk.token_to_id(r["eos"]))])
    return Tokenizer(tk, kind, dict(DEFAULT_SPECIAL_TOKENS[kind]))
