"""Writing and summarising embedding matrices (one row per text)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import LmforgeError
from ..privacy.encrypted_io import write_bytes, write_text

FORMATS = (".npy", ".jsonl", ".tsv")


def check_embeddings_path(path: str | Path) -> Path:
    """Raise a one-line error unless ``path`` can take an embeddings file (a known
    suffix, an existing parent folder, not itself a folder); call it before the work."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise LmforgeError(f"--out {path}: unknown format {path.suffix!r}; "
                           f"use one of {', '.join(FORMATS)}")
    if path.is_dir():
        raise LmforgeError(f"--out {path}: is a folder; give a file name")
    parent = path.parent
    if not parent.exists():
        raise LmforgeError(f"--out {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise LmforgeError(f"--out {path}: {parent} is a file, not a folder")
    return path


def write_embeddings(path: str | Path, texts: list[str], vectors: np.ndarray) -> None:
    """Save ``vectors`` (n, d) as .npy, .jsonl ({"text", "embedding"}) or .tsv (the text,
    a tab, then the d numbers separated by tabs): built in memory, written atomically and
    encrypted when a key is active (:mod:`lmforge.privacy.encrypted_io`)."""
    path = check_embeddings_path(path)
    if path.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, vectors.astype(np.float32))
        write_bytes(path, buf.getvalue())
    elif path.suffix == ".jsonl":
        write_text(path, "".join(
            json.dumps({"text": t, "embedding": [round(float(x), 7) for x in v]},
                       ensure_ascii=False) + "\n" for t, v in zip(texts, vectors, strict=True)))
    else:
        write_text(path, "".join(
            t.replace("\t", " ").replace("\n", " ") + "\t"
            + "\t".join(f"{x:.7g}" for x in v) + "\n"
            for t, v in zip(texts, vectors, strict=True)))


def summarize(texts: list[str], vectors: np.ndarray, max_matrix: int = 10) -> list[str]:
    """Lines for people: the shape, each text's first dimensions, and (for a few texts)
    the cosine-similarity matrix."""
    n, d = vectors.shape
    lines = [f"{n} texts x {d} dimensions"]
    for t, v in zip(texts, vectors, strict=True):
        head = " ".join(f"{x:+.3f}" for x in v[:6])
        lines.append(f"  [{head} ...] |v|={np.linalg.norm(v):.3f}  {t[:60]}")
    if 1 < n <= max_matrix:
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sim = unit @ unit.T
        lines.append("cosine similarity:")
        for i in range(n):
            lines.append("  " + " ".join(f"{sim[i, j]:+.3f}" for j in range(n)) + f"  #{i}")
    return lines
