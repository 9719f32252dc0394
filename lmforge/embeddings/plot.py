"""2-D pictures of word vectors: PCA (exact, numpy) or t-SNE (scikit-learn, optional).

PCA projects the centred vectors ``X - mean`` onto the two leading right-singular vectors
of their SVD, the directions of largest variance. t-SNE keeps neighbourhoods instead of
distances; it needs ``scikit-learn`` and at least 5 words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LmforgeError
from .keyed_vectors import KeyedVectors


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(n, d)`` -> ``(n, 2)`` coordinates."""
    if len(vectors) < 2:
        raise LmforgeError("a projection needs at least 2 words")
    if method == "pca":
        x = vectors - vectors.mean(0, keepdims=True)
        _u, _s, vt = np.linalg.svd(x, full_matrices=False)
        return x @ vt[:2].T
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise LmforgeError("t-SNE needs scikit-learn (pip install scikit-learn); "
                               "or use --method pca") from None
        if len(vectors) < 5:
            raise LmforgeError("t-SNE needs at least 5 words; use --method pca")
        perplexity = min(30.0, (len(vectors) - 1) / 3)
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
            vectors)
    raise LmforgeError(f"unknown projection {method!r}; allowed: pca, tsne")


def plot_words(kv: KeyedVectors, words: list[str], out: str | Path, method: str = "pca",
               title: str | None = None) -> Path:
    """Scatter the words' unit vectors in 2-D with their labels (CJK fonts handled) and
    write the PNG (120 dpi): atomically, and encrypted when a key is active
    (:func:`lmforge.train.plots.save_figure`)."""
    from ..train.plots import new_figure, save_figure
    from ..viz.fonts import readable_labels

    missing = [w for w in words if w not in kv]
    if missing:
        raise LmforgeError(f"not in the vocabulary: {', '.join(missing[:5])}")
    xy = project_2d(np.stack([kv.get_vector(w, norm=True) for w in words]), method)
    labels = readable_labels(words)
    fig, ax = new_figure((7, 6))
    ax.scatter(xy[:, 0], xy[:, 1], s=18)
    for (x, y), label in zip(xy, labels.labels, strict=True):
        ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points",
                    fontproperties=labels.fontproperties())
    ax.set_title(title or f"{method.upper()} of {len(words)} word vectors")
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, out, dpi=120)
    return Path(out)
