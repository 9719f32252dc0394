r"""Dense retrieval: passages embedded by a sentence encoder, searched with faiss.

Every passage :math:`p` and query :math:`q` is embedded and L2-normalised, :math:`\hat
e = e / \lVert e \rVert_2`, so the inner product is the cosine similarity:
:math:`s(q, p) = \hat e_q \cdot \hat e_p = \cos(e_q, e_p)`. Two faiss indexes:

- ``exact``: ``IndexFlatIP``, every passage scored, :math:`O(Nd)` per query;
- ``hnsw``: ``IndexHNSWFlat`` with the inner-product metric, a graph of ``m`` links per
  node (faiss's default ``efConstruction`` of 40 while building); a query walks it with
  a candidate list of ``ef_search`` nodes, about :math:`O(d \log N)` and approximate.

Either sits in an ``IndexIDMap`` whose ids are the store's passage ids, so faiss returns
passage ids and the vectors and their mapping are one file. On disk, next to
``docs.sqlite``: ``dense.faiss`` (the index) and ``dense.json`` (the manifest: ``kind``,
``m``, ``ef_search``, the encoder's ``name``, ``path`` and ``dim``, and ``probe``, the
encoder's unit vector for a fixed probe sentence). Both are written atomically; an index
created while a key is active (:func:`lmforge.privacy.encrypted_io.using_key`) writes
both encrypted (``faiss.serialize_index``'s bytes, AES-256-GCM) and reads them back in
memory (``faiss.deserialize_index``). A plain index stays plain.

The encoder is any object with ``encode(texts) -> array (n, d)``; ``None`` or
``"minilm"`` is the packaged all-MiniLM-L6-v2 and a folder path any model that
:class:`~lmforge.embeddings.contextual.SentenceEncoder` loads. An index opened with an
encoder checks that it embeds the probe sentence as the manifest says (the same
dimension and a cosine of at least 0.99), so an index never mixes two encoders' vectors.
Opened without one, it loads the manifest's encoder (MiniLM or the folder) on first use
and checks it the same way.

**Languages.** all-MiniLM-L6-v2 was trained on English sentence pairs only; its
vocabulary has Chinese characters, but their vectors carry little meaning, so a Chinese
query ranks pages little better than chance (the world's Chinese single-hop questions,
:file:`bench/retrieval.py`: recall@5 of the gold page 0.36 against BM25's 0.99).
:meth:`DenseIndex.reads` says whether the encoder can read a query: not when the query
holds a CJK ideograph and the encoder is one of :data:`ENGLISH_ONLY`. Hybrid search
leaves out the dense ranking of a query it cannot read. A model folder or an encoder
object is trusted with every query.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, DataError
from ..io import read_json
from ..privacy.crypto import is_encrypted
from ..privacy.encrypted_io import active_key, read_bytes, write_bytes_as, write_json
from ..privacy.keys import KeySource
from .passages import HAS_CJK

__all__ = ["ENGLISH_ONLY", "KINDS", "DenseIndex", "Encoder", "resolve_encoder"]

FILE, MANIFEST = "dense.faiss", "dense.json"
KINDS = ("exact", "hnsw")
PROBE = "lmforge retrieval probe: 检索 the quick brown fox jumps over the lazy dog."
MIN_PROBE_COSINE = 0.99
ENCODE_BATCH = 64
ENGLISH_ONLY = frozenset({"minilm"})  # encoders trained on English text only
_MANIFEST_FIELDS = ("kind", "m", "ef_search", "encoder", "path", "dim", "probe")


class Encoder(Protocol):
    """What dense retrieval needs of an encoder: one vector (a row) per text."""

    def encode(self, texts: list[str]) -> Any: ...


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("dense retrieval needs faiss: pip install 'lmforge[qa]'") from None
    return faiss


class _FolderEncoder:
    """A sentence-transformers/lmforge model folder (None: MiniLM), loaded on first use."""

    def __init__(self, path: Path | None):
        self.path = path

    def encode(self, texts: list[str]) -> np.ndarray:
        from ..embeddings.contextual import embed_text

        return embed_text(texts, self.path)


def resolve_encoder(spec: str | os.PathLike | Encoder | None
                    ) -> tuple[Encoder, str, str | None]:
    """``(encoder, name, path)`` for an encoder argument: None/``"minilm"`` (path None),
    a model folder (its absolute path) or an object with ``encode`` (its class name, no
    path: it cannot be reloaded by name)."""
    if spec is None or spec == "minilm":
        return _FolderEncoder(None), "minilm", None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser().resolve()
        return _FolderEncoder(path), str(path), str(path)
    if not callable(getattr(spec, "encode", None)):
        raise ConfigError("encoder must be None, 'minilm', a model folder or an object with "
                          f"an encode(texts) method (got {type(spec).__name__})")
    cls = type(spec)
    return spec, getattr(spec, "name", None) or f"{cls.__module__}.{cls.__qualname__}", None


def embed(encoder: Encoder, name: str, texts: list[str]) -> np.ndarray:
    """``encoder``'s L2-normalised float32 vectors (n, d) for ``texts``."""
    v = np.asarray(encoder.encode(texts), dtype=np.float32)
    if v.ndim != 2 or v.shape[0] != len(texts) or not np.isfinite(v).all():
        raise DataError(f"encoder {name} returned an array of shape {v.shape} for "
                        f"{len(texts)} texts; expected ({len(texts)}, dim) of finite numbers")
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class DenseIndex:
    """A faiss index of passage vectors keyed by passage id, in ``folder``; ``key``: the
    key its files are encrypted with, None when they are plain."""

    def __init__(self, folder: Path, index: Any, manifest: dict, encoder: Encoder | None,
                 key: KeySource | None = None):
        self.folder, self.index, self.manifest, self.key = folder, index, manifest, key
        self._encoder = encoder  # checked against the probe; None: load on first use
        ids = _faiss().vector_to_array(index.id_map)
        self.last_id = int(ids.max()) if len(ids) else 0

    @classmethod
    def create(cls, folder: str | os.PathLike, encoder: str | os.PathLike | Encoder | None,
               kind: str = "exact", m: int = 32, ef_search: int = 64) -> DenseIndex:
        """A new, empty index; embeds the probe sentence to learn the encoder's dim."""
        if kind not in KINDS:
            raise ConfigError(f"dense must be one of {', '.join(KINDS)} or None (got {kind!r})")
        for field, value in (("m", m), ("ef_search", ef_search)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"{field} must be an integer >= 2 (got {value!r})")
        faiss = _faiss()
        enc, name, path = resolve_encoder(encoder)
        probe = embed(enc, name, [PROBE])[0]
        dim = len(probe)
        base = (faiss.IndexFlatIP(dim) if kind == "exact"
                else faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT))
        manifest = {"kind": kind, "m": m, "ef_search": ef_search, "encoder": name,
                    "path": path, "dim": dim, "probe": probe.tolist()}
        dense = cls(Path(folder), faiss.IndexIDMap(base), manifest, enc, active_key())
        dense._set_ef_search()
        dense.save()
        write_json(Path(folder) / MANIFEST, manifest, dense.key)
        return dense

    @classmethod
    def open(cls, folder: str | os.PathLike,
             encoder: str | os.PathLike | Encoder | None = None) -> DenseIndex:
        """The index in ``folder`` (encrypted files need the active key); a given
        ``encoder`` is checked at once."""
        folder = Path(folder)
        manifest = read_json(folder / MANIFEST, error=DataError)
        missing = [f for f in _MANIFEST_FIELDS if f not in manifest]
        if missing:
            raise DataError(f"{folder / MANIFEST} is corrupt: field {missing[0]!r} is missing")
        faiss = _faiss()
        try:
            # An IndexIDMap comes back as one (the wrapper owns it: never re-wrap it).
            data = np.frombuffer(read_bytes(folder / FILE), dtype=np.uint8)
            index = faiss.deserialize_index(data)
            index.id_map  # noqa: B018 (an AttributeError if the file is not ours)
        except (OSError, RuntimeError, AttributeError) as e:
            raise DataError(f"{folder / FILE} is corrupt: {str(e).splitlines()[0]}") from None
        dense = cls(folder, index, manifest, None,
                    active_key() if is_encrypted(folder / FILE) else None)
        dense._set_ef_search()
        if encoder is not None:
            dense._encoder = dense._check(encoder)
        return dense

    def _set_ef_search(self) -> None:
        if self.manifest["kind"] == "hnsw":
            _faiss().downcast_index(self.index.index).hnsw.efSearch = self.manifest["ef_search"]

    def _check(self, spec: str | os.PathLike | Encoder | None) -> Encoder:
        """The encoder ``spec`` if it embeds the probe as the manifest says, else a
        :class:`DataError`."""
        enc, name, _ = resolve_encoder(spec)
        want = np.asarray(self.manifest["probe"], dtype=np.float32)
        got = embed(enc, name, [PROBE])[0]
        built = f"the index was built with encoder {self.manifest['encoder']} " \
                f"(dim {len(want)})"
        if len(got) != len(want):
            raise DataError(f"{built}; encoder {name} has dim {len(got)}")
        cos = float(got @ want)
        if cos < MIN_PROBE_COSINE:
            raise DataError(f"{built}; encoder {name} embeds a probe sentence differently "
                            f"(cosine {cos:.3f} < {MIN_PROBE_COSINE})")
        return enc

    @property
    def encoder(self) -> Encoder:
        """The checked encoder, loaded from the manifest on first use if none was given."""
        if self._encoder is None:
            if self.manifest["encoder"] != "minilm" and self.manifest["path"] is None:
                raise ConfigError(f"the index was built with encoder "
                                  f"{self.manifest['encoder']}, which cannot be loaded by "
                                  "name; pass encoder= to Index.open")
            self._encoder = self._check(self.manifest["path"])
        return self._encoder

    def save(self) -> None:
        """Write ``dense.faiss`` atomically (encrypted with :attr:`key` when it is set)."""
        data = _faiss().serialize_index(self.index)
        write_bytes_as(self.folder / FILE, data.tobytes(), self.key)

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Embed ``texts`` (in batches, with a progress bar on a terminal), add them under
        the passage ``ids`` and save."""
        from tqdm.auto import tqdm

        enc, name = self.encoder, self.manifest["encoder"]
        with tqdm(total=len(texts), desc="embed passages", unit=" passages",
                  disable=None) as bar:
            for start in range(0, len(texts), ENCODE_BATCH):
                batch = list(texts[start:start + ENCODE_BATCH])
                self.index.add_with_ids(embed(enc, name, batch),
                                        np.asarray(ids[start:start + ENCODE_BATCH],
                                                   dtype=np.int64))
                bar.update(len(batch))
        if len(ids):
            self.last_id = max(self.last_id, int(max(ids)))
        self.save()

    def reads(self, query: str) -> bool:
        """Whether the encoder can read ``query``: False for a query with a CJK ideograph
        and an encoder of :data:`ENGLISH_ONLY`."""
        return not (self.manifest["encoder"] in ENGLISH_ONLY and HAS_CJK.search(query))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest passages as ``(passage id, cosine)``, best first."""
        q = embed(self.encoder, self.manifest["encoder"], [query])
        scores, ids = self.index.search(q, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
