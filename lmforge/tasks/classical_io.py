"""Classical-classifier folders: JSON and safetensors only, never pickle.

A saved classifier is a folder (written atomically: staged, then renamed into place; an
existing folder at the path is replaced):

* ``classical.json``: ``{"task": "classify", "model": "tfidf-logreg" | "tfidf-linear_svm"
  | "embedding-logreg", "format_version": 1, "lmforge_version", "labels": [...],
  "settings": {constructor arguments}, "sha256": {file: hex digest}, ...}``;
* ``classical.safetensors``: float64 ``coef`` (K', V) and ``intercept`` (K',) and, for
  TF-IDF, ``idf`` (V,);
* TF-IDF: ``vocabulary.json``, the list of terms (n-grams joined by one space, as
  scikit-learn writes them) in column order;
* word-vector models: ``words.json`` and ``vectors.safetensors`` (``vectors`` and, for
  FastText vectors, ``vectors_vocab``, ``ngram_vectors``, ``bucket_rows``).

Every array file is checked against its SHA-256 in ``classical.json``; anything missing,
truncated or inconsistent raises a one-line :class:`~lmforge.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..io import atomic_dir, read_json
from .classical_linear import LinearHead

META = "classical.json"
WEIGHTS = "classical.safetensors"
FORMAT_VERSION = 1
MODELS = ("tfidf-logreg", "tfidf-linear_svm", "embedding-logreg")


def write_folder(folder: str | Path, meta: dict[str, Any],
                 arrays: Mapping[str, Mapping[str, np.ndarray]],
                 json_files: Mapping[str, Any]) -> Path:
    """Stage ``arrays`` (file -> {name: array}) as safetensors, ``json_files`` as JSON and
    ``meta`` (plus checksums of the plaintext arrays) as ``classical.json``, each
    encrypted when a key is active (:mod:`lmforge.privacy.encrypted_io`; the readers
    decrypt in memory); rename the folder into place."""
    from safetensors.numpy import save

    from .. import __version__
    from ..privacy.encrypted_io import write_bytes, write_json

    folder = Path(folder)
    sums = {}
    with atomic_dir(folder) as tmp:
        for name, tensors in arrays.items():
            data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
            write_bytes(tmp / name, data)
            sums[name] = hashlib.sha256(data).hexdigest()
        for name, obj in json_files.items():
            write_json(tmp / name, obj)
        write_json(tmp / META, {"task": "classify", **meta, "format_version": FORMAT_VERSION,
                                "lmforge_version": __version__, "sha256": sums})
    return folder


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``classical.json`` of ``folder``, checked: task, model, format version, labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"classifier folder {folder} does not exist")
    path = folder / META
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a classical classifier folder (no {META})")
    meta = read_json(path)
    if meta.get("task") != "classify" or meta.get("model") not in MODELS:
        raise CheckpointError(f"{path} is not a classifier description: need task "
                              f"'classify' and model one of {', '.join(MODELS)}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta.get('format_version')!r} is not "
                              f"supported (this lmforge reads {FORMAT_VERSION})")
    labels = meta.get("labels")
    if (not isinstance(labels, list) or len(labels) < 2
            or not all(isinstance(y, str) for y in labels) or len(set(labels)) != len(labels)):
        raise CheckpointError(f"{path} is corrupt: 'labels' must list 2 or more distinct "
                              "strings")
    for key in ("settings", "sha256"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{path} is corrupt: {key!r} must be a JSON object")
    return meta


def read_arrays(folder: str | Path, name: str, meta: dict[str, Any],
                want: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The arrays in ``folder/name`` after the checksum check; ``want`` maps each required
    array to its number of dimensions. Floating arrays must be finite."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from ..privacy.encrypted_io import read_bytes

    path = Path(folder) / name
    try:
        data = read_bytes(path)  # decrypted in memory when the run is encrypted
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    if meta["sha256"].get(name) != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"{path} is corrupt or truncated (checksum mismatch with {META})")
    try:
        arrays = load(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt: {str(e).splitlines()[0]}") from None
    for key, ndim in want.items():
        a = arrays.get(key)
        if a is None or a.ndim != ndim:
            raise CheckpointError(f"{path} is corrupt: needs a {ndim}-d array {key!r}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{path} is corrupt: {key!r} holds NaN or infinity")
    return arrays


def read_strings(folder: str | Path, name: str) -> list[str]:
    """A JSON list of distinct strings (a vocabulary) from ``folder/name``."""
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"{Path(folder)} has no {name}")
    items = read_json(path, list)
    if not all(isinstance(w, str) for w in items) or len(set(items)) != len(items):
        raise CheckpointError(f"{path} is corrupt: expected a list of distinct strings")
    return items


def read_head(folder: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]
              ) -> LinearHead:
    """The linear head from the loaded ``coef`` / ``intercept`` and ``meta``'s labels."""
    head = LinearHead(list(meta["labels"]), arrays["coef"], arrays["intercept"])
    try:
        head.check(str(Path(folder) / WEIGHTS))
    except ValueError as e:
        raise CheckpointError(f"{e} (corrupt)") from None
    return head


def model_from_settings(cls: type, folder: str | Path, meta: dict[str, Any], **extra: Any
                        ) -> Any:
    """``cls(**settings, **extra)``; a bad setting is reported as a corrupt folder."""
    try:
        return cls(**meta["settings"], **extra)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{Path(folder) / META} is corrupt: bad settings ({e})") from None
