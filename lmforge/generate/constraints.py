r"""Decode-time constraints: words as token sequences, and the bans they cause.

Written by hand (generation is what lmforge teaches).

**A word as token sequences.** A tokenizer can spell one word in many ways (byte-level
BPE: ``" cat"``, ``" c" + "at"``, ...; a Chinese character may even be split across
byte tokens), and a model may produce any of them. So a word :math:`w` stands for
*every* token sequence :math:`s` with ``decode(s) == w`` and, when :math:`w` starts with
a letter or digit, every one with ``decode(s) == " " + w`` (byte-level BPE keeps the
space in the word's token). Special tokens never count. They are found by dynamic
programming over the vocabulary (:class:`Speller`): for byte-level BPE in bytes, each
token standing for the bytes it decodes to (GPT-2's byte table); for other decoders
through the tokenizer's own ``decode`` (a token's text alone when it comes first, its
text after a fixed token otherwise, which is how WordPiece's ``##`` and the spaces
between words come out). Position :math:`j` of the target's bytes :math:`b` is
reachable from :math:`i` when a token spells :math:`b_{i:j}`; ``dist[i]``, the fewest
tokens from :math:`i` to the end, is computed backwards, and a best-first search
ordered by ``len(prefix) + dist[end of prefix]`` (exact, so never wrong) yields the
sequences shortest first. At most :data:`MAX_SEQUENCES` (64) are kept per word, the
shortest (ties: smaller token ids first): a model trained on BPE text writes the merged,
short spellings, while a long word has exponentially many byte-by-byte ones. Every kept
sequence is checked with ``tokenizer.decode``. A word that no sequence spells raises
:class:`UnencodableWordError` naming the first character no token can reach.

**Bans while sampling** (:class:`TokenBans`, Hugging Face's processors, row by row; the
history :math:`h` of a row is its prompt followed by its new tokens):

- *No repeated n-gram* (``no_repeat_ngram_size = n``, ``NoRepeatNGramLogitsProcessor``):
  token :math:`y` is banned when :math:`(h_{t-n+2}, \dots, h_t, y)` already occurs as an
  n-gram of :math:`h` (:func:`lmforge.models.beam.repeated_ngram_tokens`).
- *Bad words* (``NoBadWordsLogitsProcessor``, for each sequence :math:`s` of each bad
  word): the last token :math:`s_m` is banned when the history ends with
  :math:`s_1 \dots s_{m-1}`; a one-token sequence is always banned. A bad word can
  therefore never be completed in any spelling. Tokens that write no text (the
  tokenizer's special tokens, ``skip``) are left out of the history for this match,
  so a bad word cannot appear in the text around one (Hugging Face matches them too).
- *Bad words as text*: a bad word that does not begin and end with a letter or digit
  of a spaced script (Chinese ``球迷``, a symbol) has no word boundaries to be matched by:
  a token may write it together with other characters (``球迷们``, ``的医生``). Such a
  word :math:`w` is banned at the text level, whatever the tokens: token :math:`t`
  (writing bytes :math:`b_t`) is banned when :math:`b_t` contains :math:`w`, or when the
  text so far ends with :math:`w_{<k}` and :math:`b_t` starts with :math:`w_{\ge k}`
  (``0 < k < |w|``). So :math:`w` is never completed in the text (a shorter token that
  only continues it is allowed, and the token that would complete it is banned later).
- *Min new tokens* (``MinNewTokensLengthLogitsProcessor``): ``eos`` is banned while fewer
  than ``min_new_tokens`` new tokens exist.

A ban sets the logit to :math:`-\infty` (probability 0).

**Forced words** (:class:`ForcedWords`, used by beam search): a constraint is one word
or a list of alternative words (met by any one), hence a set of token sequences, kept
in a trie. A hypothesis's state is the set of constraints it has met and the trie nodes
of the sequences it is partway through (several at once, so no occurrence is missed):
constraint :math:`c` is met exactly when the new tokens, special tokens left out,
contain one of its sequences.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tokenizers import decoders

from ..errors import ConfigError
from ..models.beam import repeated_ngram_tokens
from ..tokenize.byte_level import byte_decoder
from .config import GenerationConfig

MAX_SEQUENCES = 64  # token sequences kept per word, the shortest


class UnencodableWordError(ConfigError):
    """A bad or forced word that no sequence of the tokenizer's tokens spells."""


def _special_ids(tokenizer: Any) -> set[int]:
    ids = getattr(tokenizer, "special_ids", None)
    if ids is not None:
        return set(ids)
    roles = ("bos_id", "eos_id", "pad_id", "unk_id", "mask_id")
    return {i for r in roles if (i := getattr(tokenizer, r, None)) is not None}


class Speller:
    """Every token sequence that spells a word (see the module docstring).

    Reads the vocabulary once: the bytes each token stands for first in a sequence and
    later in it (a dict ``bytes -> [token ids]`` each).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.specials = specials = _special_ids(tokenizer)
        self.first: dict[bytes, list[int]] = {}
        self.later: dict[bytes, list[int]] = {}
        decoder = getattr(getattr(tokenizer, "hf", None), "decoder", None)
        if isinstance(decoder, decoders.ByteLevel):
            table = byte_decoder()
            for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
                if i not in specials and all(c in table for c in token):
                    piece = bytes(table[c] for c in token)
                    self._add(self.first, piece, i)
                    self._add(self.later, piece, i)
        else:
            ids = [i for i in range(tokenizer.vocab_size) if i not in specials]
            anchor = self._anchor(ids)
            before = tokenizer.decode([anchor])
            for i in ids:
                self._add(self.first, tokenizer.decode([i]), i)
                after = tokenizer.decode([anchor, i])
                if after.startswith(before):
                    self._add(self.later, after[len(before):], i)
        self.longest = max(map(len, [*self.first, *self.later]), default=0)

    @staticmethod
    def _add(pieces: dict[bytes, list[int]], piece: str | bytes, token: int) -> None:
        if isinstance(piece, str):
            if "\ufffd" in piece:  # part of a character: not spellable through decode
                return
            piece = piece.encode("utf-8")
        if piece:
            pieces.setdefault(piece, []).append(token)

    def _anchor(self, ids: list[int]) -> int:
        """A token that decodes to plain text, to decode every other token after."""
        a = self.tokenizer.encode("a")
        if len(a) == 1 and self.tokenizer.decode(a) == "a":
            return a[0]
        return next(i for i in ids if self.tokenizer.decode([i]).strip())

    def _edges(self, target: bytes) -> list[list[tuple[int, list[int]]]]:
        """``edges[i]``: ``(j, tokens)`` for every token spelling ``target[i:j]``."""
        n = len(target)
        return [[(j, toks) for j in range(i + 1, min(n, i + self.longest) + 1)
                 if (toks := (self.first if i == 0 else self.later).get(target[i:j]))]
                for i in range(n)]

    def _shortest(self, target: bytes, limit: int) -> list[tuple[int, ...]]:
        """Up to ``limit`` token sequences spelling ``target``, shortest first."""
        n, edges = len(target), self._edges(target)
        inf = n + 1
        dist = [inf] * n + [0]  # fewest tokens from byte i to the end
        for i in range(n - 1, -1, -1):
            dist[i] = min((1 + dist[j] for j, _ in edges[i]), default=inf)
        if dist[0] >= inf:
            return []
        found: list[tuple[int, ...]] = []
        heap: list[tuple[int, tuple[int, ...], int]] = [(dist[0], (), 0)]
        while heap and len(found) < limit:
            _, path, i = heapq.heappop(heap)
            if i == n:
                found.append(path)
                continue
            for j, toks in edges[i]:
                if dist[j] < inf:
                    for t in toks:
                        heapq.heappush(heap, (len(path) + 1 + dist[j], path + (t,), j))
        return found

    def _unreachable(self, word: str) -> str | None:
        """The first character of ``word`` that no token sequence from its start reaches."""
        target = word.encode("utf-8")
        edges, reach = self._edges(target), {0}
        for i in range(len(target)):
            if i in reach:
                reach.update(j for j, _ in edges[i])
        if len(target) in reach:
            return None
        stuck = max(reach)
        return next(c for k, c in enumerate(word) if len(word[:k + 1].encode()) > stuck)

    def token_bytes(self) -> dict[int, bytes]:
        """The bytes each (non-special) token writes after other text."""
        return {i: piece for piece, ids in self.later.items() for i in ids}

    def sequences(self, word: str, what: str = "word",
                  limit: int = MAX_SEQUENCES) -> list[tuple[int, ...]]:
        """Every token sequence (at most ``limit``, the shortest) that decodes to
        ``word`` or, when it starts with a letter or digit, to ``" " + word``.

        ``what`` names the word in the error (``"bad word"``, ``"force word"``).
        """
        targets = [word, " " + word] if word[:1].isalnum() else [word]
        found = sorted({s for t in targets for s in self._shortest(t.encode(), limit)
                        if self.tokenizer.decode(list(s)) == t},
                       key=lambda s: (len(s), s))[:limit]
        if not found:
            char = self._unreachable(word)
            why = (f"the tokenizer cannot encode {char!r}" if char is not None
                   else "no token sequence decodes to it")
            raise UnencodableWordError(f"{what} {word!r}: {why}")
        return found


def word_sequences(tokenizer: Any, word: str, what: str = "word",
                   limit: int = MAX_SEQUENCES) -> list[tuple[int, ...]]:
    """:meth:`Speller.sequences` of one word (reads the vocabulary each call)."""
    return Speller(tokenizer).sequences(word, what, limit)


def is_spaced_word(word: str) -> bool:
    """Whether ``word`` begins and ends with a letter or digit of a script that puts
    spaces between words (not CJK): such a word is banned as a word (its spellings),
    any other (``球迷``, ``%``) as text (every occurrence)."""
    def spaced(c: str) -> bool:
        return c.isalnum() and not ("\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff")

    return bool(word) and spaced(word[0]) and spaced(word[-1])


@dataclass(frozen=True)
class TokenBans:
    """The tokens each row may not produce next (rules in the module docstring).

    ``bad_sequences`` are token sequences (every spelling of every bad word); tokens in
    ``skip`` (special tokens: they write no text) are left out of a history when it is
    matched against them.
    """

    eos_id: int | None = None
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    bad_sequences: tuple[tuple[int, ...], ...] = ()
    skip: frozenset[int] = frozenset()
    bad_texts: tuple[bytes, ...] = ()
    token_bytes: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)
    _always: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _after: dict[int, dict[tuple[int, ...], list[int]]] = field(init=False, repr=False,
                                                                compare=False)
    _completing: tuple[tuple[bytes, list[int]], ...] = field(init=False, repr=False,
                                                             compare=False)

    def __post_init__(self) -> None:
        after: dict[int, dict[tuple[int, ...], list[int]]] = {}  # prefix length -> prefix -> last
        for s in self.bad_sequences:
            if len(s) > 1:
                after.setdefault(len(s) - 1, {}).setdefault(tuple(s[:-1]), []).append(s[-1])
        always = {s[0] for s in self.bad_sequences if len(s) == 1}
        completing: dict[bytes, list[int]] = {}  # text before -> tokens that complete
        for w in self.bad_texts:
            always.update(i for i, b in self.token_bytes.items() if w in b)
            for k in range(1, len(w)):
                ids = [i for i, b in self.token_bytes.items() if b.startswith(w[k:])]
                if ids:
                    completing.setdefault(w[:k], []).extend(ids)
        object.__setattr__(self, "_always", tuple(sorted(always)))
        object.__setattr__(self, "_after", after)
        object.__setattr__(self, "_completing", tuple(completing.items()))

    @classmethod
    def from_config(cls, config: GenerationConfig, eos_id: int | None,
                    speller: Speller | None = None) -> TokenBans:
        """The bans of ``config``; ``bad_words`` need a ``speller`` (a tokenizer)."""
        if config.bad_words and speller is None:
            raise ConfigError("bad_words need a tokenizer: use generate, "
                              "generate_completions or complete_ids")
        if not config.bad_words:
            return cls(eos_id, config.min_new_tokens, config.no_repeat_ngram_size)
        bad = [s for w in config.bad_words for s in speller.sequences(w, "bad word")]
        texts = tuple(w.encode("utf-8") for w in config.bad_words if not is_spaced_word(w))
        return cls(eos_id, config.min_new_tokens, config.no_repeat_ngram_size,
                   tuple(dict.fromkeys(bad)), frozenset(speller.specials), texts,
                   speller.token_bytes() if texts else {})

    @property
    def active(self) -> bool:
        """Whether any token can ever be banned."""
        return bool(self.no_repeat_ngram_size or self.bad_sequences
                    or (self.min_new_tokens and self.eos_id is not None))

    @property
    def needs_history(self) -> bool:
        """Whether the bans read each row's tokens (n-grams, multi-token bad words)."""
        return bool(self.no_repeat_ngram_size or self._after or self._completing)

    def banned(self, histories: Sequence[Sequence[int]] | None, n_new: int,
               rows: int) -> list[list[int]]:
        """For each of ``rows`` rows, the token ids it may not produce after its
        ``histories[row]`` (prompt + new tokens; needed when :attr:`needs_history`),
        ``n_new`` new tokens into the generation."""
        base = list(self._always)
        if self.eos_id is not None and n_new < self.min_new_tokens:
            base.append(self.eos_id)
        if not self.needs_history:
            return [base] * rows
        out = []
        for h in histories:
            ban = base + repeated_ngram_tokens(h, self.no_repeat_ngram_size)
            if self._after:
                tail = self._text_tail(h, max(self._after))
                for m, prefixes in self._after.items():
                    if len(tail) >= m:
                        ban += prefixes.get(tuple(tail[len(tail) - m:]), [])
            if self._completing:
                text = self._byte_tail(h)
                for before, ids in self._completing:
                    if text.endswith(before):
                        ban += ids
            out.append(ban)
        return out

    def _text_tail(self, history: Sequence[int], n: int) -> list[int]:
        """The last ``n`` tokens of ``history`` not in ``skip``."""
        if not self.skip:
            return list(history[-n:])
        tail = []
        for t in reversed(history):
            if t not in self.skip:
                tail.append(t)
                if len(tail) == n:
                    break
        return tail[::-1]

    def _byte_tail(self, history: Sequence[int]) -> bytes:
        """The text bytes the last tokens of ``history`` wrote, at least as many as the
        longest bad text (or all of them)."""
        need, pieces, size = max(map(len, self.bad_texts)), [], 0
        for t in reversed(history):
            if t not in self.skip:
                piece = self.token_bytes.get(t, b"")
                pieces.append(piece)
                size += len(piece)
                if size >= need:
                    break
        return b"".join(reversed(pieces))


class ForceState(NamedTuple):
    """Where a hypothesis stands: ``met``, a bit per constraint met; ``partial``, the
    trie nodes of the constraint sequences it is partway through."""

    met: int = 0
    partial: frozenset[int] = frozenset()


class ForcedWords:
    """Tracks which constraints (sets of token sequences) a token sequence contains.

    One trie over all constraints: ``roots[c]`` is constraint ``c``'s root node;
    ``children[n]`` maps a token to the next node, ``owner[n]`` is the node's
    constraint, ``depth[n]`` its distance from the root, ``end[n]`` whether a sequence
    ends there. Tokens in ``skip`` (special tokens: they write no text) change nothing.
    """

    def __init__(self, constraints: Sequence[Sequence[Sequence[int]]] = (),
                 skip: frozenset[int] = frozenset()):
        self.skip = skip
        self.children: list[dict[int, int]] = []
        self.owner: list[int] = []
        self.depth: list[int] = []
        self.end: list[bool] = []
        self.roots = [self._node(c, 0) for c in range(len(constraints))]
        for c, seqs in enumerate(constraints):
            for seq in seqs:
                n = self.roots[c]
                for tok in seq:
                    if tok not in self.children[n]:
                        self.children[n][tok] = self._node(c, self.depth[n] + 1)
                    n = self.children[n][tok]
                self.end[n] = True
        self.count = len(constraints)
        self.all_met = (1 << self.count) - 1

    def _node(self, owner: int, depth: int) -> int:
        self.children.append({})
        self.owner.append(owner)
        self.depth.append(depth)
        self.end.append(False)
        return len(self.children) - 1

    @classmethod
    def from_config(cls, config: GenerationConfig, speller: Speller | None) -> ForcedWords:
        """``config.force_words`` as constraints (a list entry: alternatives)."""
        if config.force_words and speller is None:
            raise ConfigError("force_words need a tokenizer: use generate, "
                              "generate_completions or complete_ids")
        constraints = []
        for entry in config.force_words:
            words = [entry] if isinstance(entry, str) else entry
            constraints.append([s for w in words for s in speller.sequences(w, "force word")])
        return cls(constraints, frozenset(speller.specials) if speller else frozenset())

    def _unmet_roots(self, met: int) -> list[int]:
        return [r for c, r in enumerate(self.roots) if not met >> c & 1]

    def advance(self, state: ForceState, token: int) -> ForceState:
        """The state after appending ``token``."""
        if not self.count or token in self.skip:
            return state
        met, nodes = state.met, []
        for n in [*state.partial, *self._unmet_roots(met)]:
            nxt = self.children[n].get(token)
            if nxt is not None and not met >> self.owner[nxt] & 1:
                if self.end[nxt]:
                    met |= 1 << self.owner[nxt]
                else:
                    nodes.append(nxt)
        return ForceState(met, frozenset(n for n in nodes if not met >> self.owner[n] & 1))

    def next_tokens(self, state: ForceState) -> set[int]:
        """The tokens that start or continue a sequence of an unmet constraint."""
        return {t for n in [*state.partial, *self._unmet_roots(state.met)]
                for t in self.children[n]}

    def n_met(self, state: ForceState) -> int:
        return state.met.bit_count()

    def done(self, state: ForceState) -> bool:
        return state.met == self.all_met

    def bank(self, state: ForceState) -> tuple[int, int, int]:
        """(constraints met, whether partway through a word, tokens into the furthest
        partial sequence): where beam search files the hypothesis."""
        depth = max((self.depth[n] for n in state.partial), default=0)
        return self.n_met(state), int(depth > 0), depth


def build_constraints(config: GenerationConfig, tokenizer: Any,
                      eos_id: int | None) -> tuple[TokenBans, ForcedWords]:
    """The bans and forced words of ``config``, spelled with ``tokenizer`` (read only
    when there are words; ``None`` then raises a clear error)."""
    words = config.bad_words or config.force_words
    speller = Speller(tokenizer) if words and tokenizer is not None else None
    return (TokenBans.from_config(config, eos_id, speller),
            ForcedWords.from_config(config, speller))
