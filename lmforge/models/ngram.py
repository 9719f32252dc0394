r"""An n-gram language model with interpolated (modified) Kneser-Ney smoothing.

Written by hand because it is what lmforge teaches (the classical baseline that neural
LMs are measured against). It is plain Python over dicts and Counters, not an
``nn.Module``, and so is not in the neural model registry.

Sentences and padding
---------------------
Each training sentence ``w_1 .. w_m`` is padded to ``<s>^(N-1) w_1 .. w_m </s>`` for an
order-``N`` model. The *targets* are ``w_1 .. w_m </s>``; ``<s>`` is only ever context,
never predicted. The model's vocabulary ``V`` (the set its distributions are over) is
every training word type plus ``</s>`` plus ``<unk>``; a word outside it is scored as
``<unk>``.

Counts
------
Only n-grams that end at a target are counted, so every lower-order n-gram is the suffix
of some counted N-gram. The count used at level ``k`` is:

* ``k = N`` (highest order): the raw count ``c(h w)``;
* ``k < N``: the continuation count ``N1+(. h w) = |{x : c(x h w) > 0}|`` (the number of
  distinct words seen before ``h w``). Padding ``<s>`` counts as a left neighbour, so a
  sentence-initial word has continuation count 1 from ``<s>``.

Write ``a(h w)`` for the count at the level of ``h w``, ``a(h .) = sum_w a(h w)``, and
``N_r(h .)`` for the number of words with ``a(h w) = r`` (``N_3+`` for ``>= 3``).

Interpolated Kneser-Ney (Chen & Goodman 1998)
--------------------------------------------
For a context ``h`` seen at its level (``a(h .) > 0``)::

    p(w | h) = max(a(h w) - D(a(h w)), 0) / a(h .)  +  gamma(h) * p(w | h')

    gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / a(h .)

where ``h'`` is ``h`` without its first word. An unseen context (``a(h .) = 0``) backs
off entirely: ``p(w | h) = p(w | h')``. The recursion ends at the unigram level (``h``
empty, continuation counts ``N1+(. w)``, or raw counts when ``N = 1``) which is
interpolated, with its own discounts, with the uniform distribution ``p_0(w) = 1/|V|``.
Since ``0 <= D_r <= r``, every level sums to one over ``V``.

``discount='modified'`` uses three discounts per level, from the count-of-counts
``n_r`` (the number of n-grams at that level whose count, raw or continuation, is ``r``)::

    Y = n1 / (n1 + 2 n2)
    D1 = 1 - 2 Y n2 / n1,   D2 = 2 - 3 Y n3 / n2,   D3+ = 3 - 4 Y n4 / n3

*Fallback* (small corpora): a discount ``D_r`` whose formula divides by zero or whose
value falls outside ``(0, r]`` is replaced by KenLM's fallback value
(``D1, D2, D3+ = 0.5, 1.0, 1.5``); the levels where this happened are listed in
:attr:`NGramLM.fallback_levels`.

``discount=<float D>`` is plain interpolated Kneser-Ney: one discount ``0 < D <= 1`` for
every count and level (``D1 = D2 = D3+ = D``), the variant NLTK implements.

``uniform_floor=False`` drops the uniform distribution: the unigram level is then the
undiscounted continuation distribution ``N1+(. w) / N1+(. .)`` (raw frequencies when
``N = 1``). This is NLTK's ``KneserNeyInterpolated`` lowest order; words never seen as
targets (and ``<unk>``) then get probability 0 and held-out perplexity can be infinite.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, ConfigError, DataError
from ..io import atomic_write_json

__all__ = ["BOS", "EOS", "UNK", "NGramLM", "modified_kn_discounts"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FORMAT = "lmforge-ngram"
FORMAT_VERSION = 1
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def modified_kn_discounts(count_of_counts: dict[int, int]) -> tuple[tuple[float, float, float],
                                                                    bool]:
    """Chen & Goodman's ``(D1, D2, D3+)`` from ``{r: n_r}``; also whether a fallback was used.

    See the module docstring for the formulas and the fallback rule.
    """
    n1, n2, n3, n4 = (count_of_counts.get(r, 0) for r in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else None
    raw: list[float | None] = [None, None, None]
    if y is not None:
        raw[0] = 1 - 2 * y * n2 / n1
        raw[1] = 2 - 3 * y * n3 / n2
        if n3 > 0:
            raw[2] = 3 - 4 * y * n4 / n3
    out, fell_back = [], False
    for r, (d, fb) in enumerate(zip(raw, FALLBACK_DISCOUNTS, strict=True), start=1):
        if d is None or not (0 < d <= r):
            d, fell_back = fb, True
        out.append(float(d))
    return (out[0], out[1], out[2]), fell_back


class NGramLM:
    """Order-``N`` n-gram LM with interpolated Kneser-Ney smoothing.

    >>> lm = NGramLM(order=3).fit([["the", "cat", "sat"], ["the", "dog", "sat"]])
    >>> round(sum(lm.prob(w, ["<s>", "the"]) for w in lm.vocab), 12)
    1.0
    """

    def __init__(self, order: int = 3, discount: str | float = "modified",
                 uniform_floor: bool = True) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ConfigError(f"order: must be an integer >= 1, got {order!r}")
        if isinstance(discount, str):
            if discount != "modified":
                raise ConfigError(f"discount: must be 'modified' or a number in (0, 1], "
                                  f"got {discount!r}")
        elif isinstance(discount, bool) or not isinstance(discount, (int, float)) \
                or not (0 < discount <= 1):
            raise ConfigError(f"discount: must be 'modified' or a number in (0, 1], "
                              f"got {discount!r}")
        self.order = order
        self.discount: str | float = discount if isinstance(discount, str) else float(discount)
        self.uniform_floor = bool(uniform_floor)
        self._ngrams: Counter[tuple[str, ...]] = Counter()
        self._words: list[str] = []
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    def fit(self, sentences: Iterable[Sequence[str]]) -> NGramLM:
        """Count the n-grams of ``sentences`` (lists of tokens) and build the model."""
        n = self.order
        counts: Counter[tuple[str, ...]] = Counter()
        words: set[str] = set()
        pad = [BOS] * (n - 1)
        n_sent = 0
        for i, sent in enumerate(sentences):
            if isinstance(sent, str):
                raise DataError(f"sentence {i} is a string; pass a list of tokens "
                                f"(e.g. text.split())")
            toks = list(sent)
            for t in toks:
                if not isinstance(t, str):
                    raise DataError(f"sentence {i}: tokens must be strings, got {t!r}")
                if t in (BOS, EOS):
                    raise DataError(f"sentence {i}: {t!r} is reserved for padding")
            words.update(toks)
            padded = pad + toks + [EOS]
            counts.update(zip(*(padded[j:] for j in range(n)), strict=False))
            n_sent += 1
        if n_sent == 0:
            raise DataError("fit: no sentences given")
        self._install(counts, sorted(words))
        return self

    def _install(self, ngrams: Counter[tuple[str, ...]], words: list[str]) -> None:
        """Build every level's tables from the raw highest-order counts."""
        n = self.order
        self._ngrams = ngrams
        self._words = words
        vocab = list(words) + [EOS] + ([] if UNK in words else [UNK])
        self._vocab = tuple(vocab)
        self._index = {w: i for i, w in enumerate(vocab)}
        known = set(vocab) | {BOS}
        self._known = known

        # level counts: raw at level N, continuation counts below
        level: dict[int, dict[tuple[str, ...], int]] = {n: dict(ngrams)}
        for k in range(n - 1, 0, -1):
            cont: Counter[tuple[str, ...]] = Counter()
            for g in level[k + 1]:
                cont[g[1:]] += 1
            level[k] = dict(cont)

        self._table: dict[int, dict[tuple[str, ...], dict[str, int]]] = {}
        self._stats: dict[int, dict[tuple[str, ...], tuple[int, float]]] = {}
        self.discounts: dict[int, tuple[float, float, float]] = {}
        self.fallback_levels: list[int] = []
        for k in range(1, n + 1):
            table: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
            for g, c in level[k].items():
                table[g[:-1]][g[-1]] = c
            if k == 1 and not self.uniform_floor:
                disc = (0.0, 0.0, 0.0)      # pure continuation distribution
            elif self.discount == "modified":
                disc, fell_back = modified_kn_discounts(Counter(level[k].values()))
                if fell_back:
                    self.fallback_levels.append(k)
            else:
                d = float(self.discount)
                disc = (d, d, d)
            d1, d2, d3 = disc
            stats = {}
            for h, succ in table.items():
                total = n1 = n2 = n3 = 0
                for c in succ.values():
                    total += c
                    if c == 1:
                        n1 += 1
                    elif c == 2:
                        n2 += 1
                    else:
                        n3 += 1
                stats[h] = (total, (d1 * n1 + d2 * n2 + d3 * n3) / total)
            self._table[k] = dict(table)
            self._stats[k] = stats
            self.discounts[k] = disc
        self._fitted = True

    # ------------------------------------------------------------------ queries
    def _check(self) -> None:
        if not self._fitted:
            raise ConfigError("NGramLM: call fit() (or load()) before using the model")

    @property
    def vocab(self) -> tuple[str, ...]:
        """Tokens the model predicts: training words (sorted), ``</s>`` and ``<unk>``."""
        self._check()
        return self._vocab

    def _context(self, context: Sequence[str] | None) -> tuple[str, ...]:
        if context is None:
            return ()
        if isinstance(context, str):
            raise TypeError("context must be a sequence of tokens, not a string")
        ctx = tuple(t if t in self._known else UNK for t in context)
        return ctx[max(0, len(ctx) - (self.order - 1)):]

    def _disc(self, k: int, c: int) -> float:
        d1, d2, d3 = self.discounts[k]
        return d1 if c == 1 else d2 if c == 2 else d3

    def _prob(self, w: str, ctx: tuple[str, ...]) -> float:
        p = 1.0 / len(self._vocab) if self.uniform_floor else 0.0
        for k in range(1, len(ctx) + 2):
            h = ctx[len(ctx) - (k - 1):]
            succ = self._table[k].get(h)
            if succ is None:           # unseen context: this and all longer ones back off
                break
            total, gamma = self._stats[k][h]
            c = succ.get(w, 0)
            alpha = max(c - self._disc(k, c), 0.0) / total if c else 0.0
            p = alpha + gamma * p
        return p

    def prob(self, word: str, context: Sequence[str] | None = None) -> float:
        """p(word | context). Only the last ``order - 1`` context tokens are used; unknown
        tokens are read as ``<unk>``. ``<s>`` is never predicted (probability 0)."""
        self._check()
        if word == BOS:
            return 0.0
        return self._prob(word if word in self._index else UNK, self._context(context))

    def logprob(self, word: str, context: Sequence[str] | None = None) -> float:
        """Natural log of :meth:`prob` (``-inf`` where the probability is 0)."""
        p = self.prob(word, context)
        return math.log(p) if p > 0 else -math.inf

    def distribution(self, context: Sequence[str] | None = None) -> np.ndarray:
        """p(. | context) over :attr:`vocab` as a float64 array (sums to 1)."""
        self._check()
        ctx = self._context(context)
        V = len(self._vocab)
        p = np.full(V, 1.0 / V) if self.uniform_floor else np.zeros(V)
        for k in range(1, len(ctx) + 2):
            h = ctx[len(ctx) - (k - 1):]
            succ = self._table[k].get(h)
            if succ is None:
                break
            total, gamma = self._stats[k][h]
            p *= gamma
            idx = np.fromiter((self._index[w] for w in succ), dtype=np.int64, count=len(succ))
            cs = np.fromiter(succ.values(), dtype=np.float64, count=len(succ))
            d1, d2, d3 = self.discounts[k]
            disc = np.where(cs == 1, d1, np.where(cs == 2, d2, d3))
            p[idx] += np.maximum(cs - disc, 0.0) / total
        return p

    def sentence_logprob(self, sentence: Sequence[str]) -> tuple[float, int]:
        """(sum of natural-log probabilities of the sentence's targets, number of targets).

        The targets are the words and the closing ``</s>``."""
        self._check()
        if isinstance(sentence, str):
            raise TypeError("sentence must be a list of tokens, not a string")
        hist = [BOS] * (self.order - 1) + list(sentence) + [EOS]
        total = 0.0
        for i in range(self.order - 1, len(hist)):
            total += self.logprob(hist[i], hist[i - self.order + 1:i])
        return total, len(hist) - (self.order - 1)

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """exp(-(1/T) sum log p) over all targets (words and ``</s>``) of ``sentences``."""
        lp, n = 0.0, 0
        for s in sentences:
            a, b = self.sentence_logprob(s)
            lp += a
            n += b
        if n == 0:
            raise DataError("perplexity: no sentences given")
        return math.exp(-lp / n) if lp > -math.inf else math.inf

    def sample(self, seed: int | np.random.Generator | random.Random | None = None,
               context: Sequence[str] = (), max_len: int = 100,
               allow_unk: bool = False) -> list[str]:
        """Generate the rest of a sentence after ``context`` (default: from its start).

        Returns the generated tokens, ending with ``</s>`` unless ``max_len`` tokens were
        generated first. ``seed`` is an int (reproducible), a numpy ``Generator`` or a
        ``random.Random``. ``<unk>`` is never generated unless ``allow_unk``.
        """
        self._check()
        if isinstance(seed, random.Random):
            rng = np.random.default_rng(seed.getrandbits(64))
        elif isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng(seed)
        if isinstance(context, str):
            raise TypeError("context must be a sequence of tokens, not a string")
        hist = [BOS] * (self.order - 1) + list(context)
        unk = self._index[UNK]
        out: list[str] = []
        while len(out) < max_len:
            p = self.distribution(hist)
            if not allow_unk:
                p[unk] = 0.0
            p = p / p.sum()
            w = self._vocab[int(rng.choice(len(p), p=p))]
            out.append(w)
            hist.append(w)
            if w == EOS:
                break
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the model as one JSON file (atomically): settings, vocabulary and the raw
        highest-order counts; everything else is recomputed on load."""
        self._check()
        obj = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "order": self.order,
            "discount": self.discount,
            "uniform_floor": self.uniform_floor,
            "words": self._words,
            "ngrams": [[*g, c] for g, c in sorted(self._ngrams.items())],
        }
        atomic_write_json(path, obj)

    @classmethod
    def load(cls, path: str | Path) -> NGramLM:
        """Read a model written by :meth:`save` (raises ``CheckpointError`` if invalid)."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such n-gram model file") from None
        except (OSError, ValueError, RecursionError) as e:  # also JSON nested too deep
            raise CheckpointError(f"{path}: not a readable n-gram model ({e})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an lmforge n-gram model (format != {FORMAT!r})")
        if obj.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported n-gram model version "
                                  f"{obj.get('version')!r}")
        try:
            lm = cls(obj["order"], obj["discount"], obj["uniform_floor"])
            n = lm.order
            ngrams: Counter[tuple[str, ...]] = Counter()
            for row in obj["ngrams"]:
                if len(row) != n + 1 or not isinstance(row[-1], int) or row[-1] < 1 \
                        or not all(isinstance(t, str) for t in row[:-1]):
                    raise CheckpointError(f"{path}: malformed n-gram entry {row!r}")
                ngrams[tuple(row[:-1])] = row[-1]
            words = obj["words"]
            if not ngrams or not isinstance(words, list) \
                    or not all(isinstance(w, str) for w in words):
                raise CheckpointError(f"{path}: missing n-grams or vocabulary")
        except (KeyError, TypeError, ConfigError) as e:
            raise CheckpointError(f"{path}: corrupt n-gram model ({e})") from None
        lm._install(ngrams, sorted(words))
        return lm

    def __repr__(self) -> str:
        size = f", |V|={len(self._vocab)}" if self._fitted else ""
        return (f"NGramLM(order={self.order}, discount={self.discount!r}, "
                f"uniform_floor={self.uniform_floor}{size})")
