r"""Facebook fastText's ``.bin`` model format: save and load lmforge FastText models.

**Facebook's ``.bin`` format** (``save_facebook_model``, ``load_facebook_model``,
``load_facebook_vectors``; fastText ≥ 0.9, little-endian), as ``FastText::saveModel``
writes it: ``int32 magic 793712314, int32 version 12``; ``Args``: ``int32`` dim, ws,
epoch, minCount, neg, wordNgrams, loss (2 = negative sampling), model (2 = skip-gram),
bucket, minn, maxn, lrUpdateRate, then ``float64 t``; ``Dictionary``: ``int32`` size,
nwords, nlabels, ``int64`` ntokens, pruneidx_size, then per word its UTF-8 bytes, a NUL,
``int64`` count and ``int8`` type (0 = word); ``bool`` quantised (0); the input matrix
(``int64`` rows = nwords + bucket, ``int64`` dim, float32 rows: the word vectors ``z_w``
then the bucket vectors ``z_g``, unused buckets written as zero); ``bool`` quantised
output (0); the output matrix (nwords × dim, the ``u_c``).

gensim reads these files (``load_facebook_model``/``load_facebook_vectors``) and lmforge
reads gensim's and fastText's own. Reads are bounds-checked: a truncated or corrupt file,
a quantised (``.ftz``) or supervised model raises :class:`EmbeddingError` naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_open
from ..privacy.encrypted_io import read_bytes
from .fasttext import (
    MAX_BUCKET,
    FastText,
    FastTextKeyedVectors,
    _compact_subwords,
    _keyed_vectors,
)
from .vocab import EmbeddingError, Vocab

__all__ = ["load_facebook_model", "load_facebook_vectors", "save_facebook_model"]

_FB_MAGIC = 793712314
_FB_VERSION = 12
_SIGN = struct.Struct("<2i")  # magic, version
_ARGS = struct.Struct("<12id")
_ARG_NAMES = ("dim", "ws", "epoch", "min_count", "neg", "word_ngrams", "loss", "model",
              "bucket", "minn", "maxn", "lr_update_rate", "t")
_DICT = struct.Struct("<3i2q")  # size, nwords, nlabels, ntokens, pruneidx_size
_ENTRY = struct.Struct("<qb")  # count, type (0 = word)
_MATRIX = struct.Struct("<?2q")  # quantised flag, rows, columns
_LOSS_NS, _MODEL_SG = 2, 2


def _fb_head(model: FastText) -> bytes:
    """Signature, ``Args`` and ``Dictionary`` of ``model`` in the .bin layout."""
    cfg, vocab, kv = model.config, model.vocab, model.wv
    v = len(kv)
    args = (kv.vector_size, cfg.window, cfg.epochs, cfg.min_count, cfg.negative, 1,
            _LOSS_NS, _MODEL_SG, kv.bucket, kv.min_n, kv.max_n, 100, float(cfg.sample))
    parts = [_SIGN.pack(_FB_MAGIC, _FB_VERSION), _ARGS.pack(*args),
             _DICT.pack(v, v, 0, int(vocab.total_raw), -1)]
    for w, c in zip(vocab.words, vocab.counts.tolist(), strict=True):
        b = w.encode("utf-8")
        if b"\0" in b:
            raise EmbeddingError(f"word {w!r} contains a NUL character; the fastText .bin "
                                 "format cannot store it")
        parts += [b, b"\0", _ENTRY.pack(int(c), 0)]
    return b"".join(parts)


_ROWS_PER_WRITE = 65536  # bucket rows assembled in memory at a time


def _write_buckets(f, kv: FastTextKeyedVectors) -> None:
    """The ``bucket`` rows of the input matrix, in slices: zero except the used buckets."""
    d = kv.vector_size
    for lo in range(0, kv.bucket, _ROWS_PER_WRITE):
        hi = min(lo + _ROWS_PER_WRITE, kv.bucket)
        block = np.zeros((hi - lo, d), dtype="<f4")
        rows = kv.bucket_rows[lo:hi]
        used = np.flatnonzero(rows >= 0)
        block[used] = kv.ngram_vectors[rows[used]]
        f.write(block.tobytes())


def save_facebook_model(model: FastText, path: str | Path) -> None:
    """Write ``model`` in Facebook's fastText ``.bin`` format (atomically), readable by
    fastText and ``gensim.models.fasttext.load_facebook_model/vectors``.

    The input matrix has ``len(vocab) + bucket`` rows (``bucket × d × 4`` bytes on disk:
    800 MB for the default 2M buckets and d = 100), streamed in slices of 65,536 rows, so
    memory stays small; unused buckets are zero."""
    if model.wv is None or model.syn1neg is None or model.vocab is None:
        raise EmbeddingError("the FastText model is not trained; call fit() first")
    kv = model.wv
    head = _fb_head(model)
    v, d = kv.vectors_vocab.shape
    with atomic_open(path) as f:
        f.write(head)
        f.write(_MATRIX.pack(False, v + kv.bucket, d))
        f.write(np.ascontiguousarray(kv.vectors_vocab, dtype="<f4").tobytes())
        _write_buckets(f, kv)
        f.write(_MATRIX.pack(False, v, d))
        f.write(np.ascontiguousarray(model.syn1neg, dtype="<f4").tobytes())


class _BinReader:
    """Bounds-checked reads from a .bin file (decrypted in memory when it is encrypted at
    rest, with the active key); every failure is an ``EmbeddingError`` naming the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.data = read_bytes(self.path)
        except OSError as e:
            raise EmbeddingError(f"cannot read fastText model {self.path}: "
                                 f"{e.strerror or e}") from None
        self.pos = 0

    def fail(self, why: str) -> EmbeddingError:
        return EmbeddingError(f"{self.path}: not a valid fastText .bin file ({why})")

    def need(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated in {what}")
        start, self.pos = self.pos, self.pos + n
        return start

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack_from(self.data, self.need(st.size, what))

    def word(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail("truncated in the dictionary")
        raw = self.data[self.need(end - self.pos + 1, "the dictionary"):end]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"word {raw[:40]!r} is not UTF-8") from None

    def matrix(self, rows: int, d: int, what: str) -> np.ndarray:
        quantised, r, c = self.unpack(_MATRIX, what)
        if quantised:
            raise self.fail("quantised models (.ftz) are not supported")
        if (r, c) != (rows, d):
            raise self.fail(f"{what} is {r} x {c}, expected {rows} x {d}")
        start = self.need(4 * r * c, what)
        return np.frombuffer(self.data, dtype="<f4", count=r * c, offset=start).reshape(r, c)


@dataclass
class _FbFile:
    args: dict
    words: list[str]
    counts: np.ndarray
    ntokens: int
    input: np.ndarray  # [nwords + bucket, dim]
    output: np.ndarray  # [nwords, dim]


def _read_args(r: _BinReader) -> dict:
    magic, version = r.unpack(_SIGN, "the header")
    if magic != _FB_MAGIC:
        raise r.fail("bad magic number; fastText >= 0.9 .bin files are supported")
    if not 11 <= version <= _FB_VERSION:
        raise r.fail(f"unsupported version {version}")
    a = dict(zip(_ARG_NAMES, r.unpack(_ARGS, "the arguments"), strict=True))
    if a["dim"] < 1 or not 1 <= a["bucket"] <= MAX_BUCKET:
        raise r.fail(f"dim={a['dim']}, bucket={a['bucket']}")
    if not 1 <= a["minn"] <= a["maxn"]:
        raise r.fail(f"minn={a['minn']}, maxn={a['maxn']}: models without character "
                     "n-grams are not supported")
    return a


def _read_dictionary(r: _BinReader) -> tuple[list[str], np.ndarray, int]:
    size, nwords, nlabels, ntokens, npruned = r.unpack(_DICT, "the dictionary")
    if nlabels != 0 or size != nwords:
        raise r.fail("supervised (labelled) models are not supported")
    if size < 1 or npruned > 0:
        raise r.fail(f"{size} words, {npruned} pruned entries")
    words: list[str] = []
    counts = np.empty(size, dtype=np.int64)
    for i in range(size):
        words.append(r.word())
        counts[i], kind = r.unpack(_ENTRY, "the dictionary")
        if kind != 0:
            raise r.fail(f"entry {i} is not a word (type {kind})")
    if len(set(words)) != size:
        raise r.fail("duplicate words in the dictionary")
    return words, counts, ntokens


def _read_facebook(path: str | Path) -> _FbFile:
    r = _BinReader(path)
    args = _read_args(r)
    words, counts, ntokens = _read_dictionary(r)
    v, d = len(words), args["dim"]
    inp = r.matrix(v + args["bucket"], d, "the input matrix")
    out = r.matrix(v, d, "the output matrix")
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the output matrix")
    return _FbFile(args, words, counts, ntokens, inp, out)


def _fb_vectors(fb: _FbFile) -> FastTextKeyedVectors:
    """Keep the word rows and the buckets used by vocabulary words (the others were
    never trained); compose ``h_w``."""
    a = fb.args
    sub = _compact_subwords(fb.words, a["minn"], a["maxn"], a["bucket"])
    v = len(fb.words)
    syn0 = np.concatenate([fb.input[:v], fb.input[v + sub[3]]]).astype(np.float32)
    return _keyed_vectors(fb.words, syn0, sub, a["minn"], a["maxn"], fb.counts)


def load_facebook_vectors(path: str | Path) -> FastTextKeyedVectors:
    """Vectors (in-vocabulary and out-of-vocabulary) of a fastText ``.bin`` file written
    by fastText, gensim's ``save_facebook_model`` or ``save_facebook_model``."""
    return _fb_vectors(_read_facebook(path))


def load_facebook_model(path: str | Path) -> FastText:
    """A ``FastText`` (config, vocabulary, ``wv``, ``syn1neg``) from a skip-gram,
    negative-sampling fastText ``.bin`` file; settings the format does not store
    (``alpha``, ``seed``, ...) keep their defaults."""
    from ..errors import ConfigError
    fb = _read_facebook(path)
    a = fb.args
    if a["model"] != _MODEL_SG or a["loss"] != _LOSS_NS:
        raise EmbeddingError(f"{path}: model={a['model']}, loss={a['loss']}; lmforge's "
                             "FastText is skip-gram (2) with negative sampling (2) only; "
                             "load_facebook_vectors reads the vectors of any model")
    try:
        model = FastText(vector_size=a["dim"], window=a["ws"], epochs=a["epoch"],
                         min_count=a["min_count"], negative=a["neg"], sample=a["t"],
                         min_n=a["minn"], max_n=a["maxn"], bucket=a["bucket"])
    except ConfigError as e:
        raise EmbeddingError(f"{path}: {e}") from None
    model.vocab = Vocab(fb.words, fb.counts, {w: i for i, w in enumerate(fb.words)},
                        int(fb.ntokens))
    model.wv = _fb_vectors(fb)
    model.syn1neg = np.array(fb.output, dtype=np.float32)
    return model
