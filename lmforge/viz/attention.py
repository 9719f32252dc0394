r"""Attention maps of a GPT: which earlier tokens each token looks at.

For layer :math:`l` and head :math:`i` the picture is the matrix

.. math::  A^{(l,i)} = \mathrm{softmax}\big(q_i k_i^\top / \sqrt{d_h} + M\big) \in [0,1]^{T\times T}

(row ``t``: how much query token ``t`` attends to each key token; each row sums to 1;
the causal mask ``M`` makes the upper triangle 0).

GPT's ``forward`` uses the fused ``F.scaled_dot_product_attention``, which never forms
these weights. :func:`gpt_attention` therefore runs the same computation itself, block
by block with the model's own modules, through
:func:`lmforge.nn.attention.scaled_dot_product_attention_explicit`, and returns the
weights of every layer along with the logits (which equal ``model(input_ids)``; a test
checks this to 1e-5, so the pictures show what the model really computes).

:func:`plot_attention` draws them as PNG heatmaps with the tokens on both axes. Tokens
are decoded one at a time; a piece of a multi-byte UTF-8 character (byte-level BPE
splits Chinese characters into 2-3 pieces) is shown as its bytes, e.g. ``世<e7 95>``;
spaces as ``␣``; control characters as escapes. Chinese labels need a CJK font; see
:mod:`lmforge.viz.fonts`.
"""

from __future__ import annotations

import io
import logging
import math
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError, DataError
from ..tokenize.byte_level import byte_decoder

__all__ = ["gpt_attention", "token_labels", "plot_attention", "attention_figure_size"]


# ------------------------------------------------------------------- weights


@torch.no_grad()
def gpt_attention(model: torch.nn.Module, input_ids: Tensor,
                  attention_mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
    """``(logits (B, T, V), [weights (B, h, T, T) per layer])`` of an lmforge GPT
    (``GPT.forward(..., output_attentions=True)``). Run it in eval mode: dropout would
    make the weights random."""
    from ..models.gpt import GPT

    if not isinstance(model, GPT):
        raise CheckpointError(f"attention maps support lmforge GPT models; got "
                              f"{type(model).__name__}")
    return model(input_ids, attention_mask=attention_mask, output_attentions=True)


# ------------------------------------------------------------------- labels


_BYTES = byte_decoder()
_ESCAPES = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _readable(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _bytes_label(data: bytes) -> str:
    """Whole UTF-8 characters as text, stray bytes of a split character as ``<e4 b8>``."""
    out, stray, i = [], [], 0
    while i < len(data):
        for n in (1, 2, 3, 4):
            try:
                ch = data[i:i + n].decode("utf-8")
            except UnicodeDecodeError:
                continue
            break
        else:
            stray.append(f"{data[i]:02x}")
            i += 1
            continue
        if stray:
            out.append("<" + " ".join(stray) + ">")
            stray = []
        out.append(_readable(ch))
        i += n
    if stray:
        out.append("<" + " ".join(stray) + ">")
    return "".join(out)


def token_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """A readable label for each token id (see the module docstring)."""
    labels = []
    for i in ids:
        text = tokenizer.decode([int(i)], skip_special_tokens=False)
        if "\ufffd" in text:  # a piece of a multi-byte character
            piece = tokenizer.id_to_token(int(i)) or ""
            if piece and all(ch in _BYTES for ch in piece):
                text = _bytes_label(bytes(_BYTES[ch] for ch in piece))
            else:
                text = text.replace("\ufffd", "<?>")
            labels.append(text)
            continue
        labels.append(_readable(text) if text else "∅")
    return labels


# ------------------------------------------------------------------- pictures

_DPI = 100


def _panel_inches(n_tokens: int) -> float:
    return min(14.0, max(3.5, 0.28 * n_tokens + 2.0))


def _grid(n_panels: int) -> tuple[int, int]:
    cols = min(n_panels, 4)
    return math.ceil(n_panels / cols), cols


def attention_figure_size(n_tokens: int, n_panels: int, dpi: int = _DPI) -> tuple[int, int]:
    """(width, height) in pixels of a picture of ``n_panels`` heads over ``n_tokens``."""
    rows, cols = _grid(n_panels)
    s = _panel_inches(n_tokens)
    return round(cols * s * dpi), round(rows * s * dpi)


def _check_indices(what: str, chosen: Sequence[int] | None, n: int) -> list[int]:
    if chosen is None:
        return list(range(n))
    out = []
    for i in chosen:
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise ConfigError(f"{what}: {i} is out of range; the model has {n} "
                              f"{what}s (0..{n - 1}, or negative from the end)")
        if j not in out:
            out.append(j)
    if not out:
        raise ConfigError(f"{what}: choose at least one")
    return out


def _draw(weights: Tensor, heads: list[int], labels, title: str) -> bytes:
    """One figure of the chosen heads of one layer's weights (h, T, T); PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    T = weights.shape[-1]
    rows, cols = _grid(len(heads))
    s = _panel_inches(T)
    fig = Figure(figsize=(cols * s, rows * s), dpi=_DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fp = labels.fontproperties()
    size = max(5.0, min(10.0, 220.0 / max(T, 1)))
    image = None
    for n, ax in enumerate(axes.flat):
        if n >= len(heads):
            ax.set_axis_off()
            continue
        image = ax.imshow(weights[heads[n]].float().cpu().numpy(), cmap="viridis",
                          vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {heads[n]}", fontsize=10)
        ax.set_xticks(range(T), labels.labels, rotation=90, fontsize=size, fontproperties=fp)
        ax.set_yticks(range(T), labels.labels, fontsize=size, fontproperties=fp)
        ax.set_xlabel("key (attended to)", fontsize=9)
        ax.set_ylabel("query", fontsize=9)
    fig.suptitle(title, fontsize=11)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    buf = io.BytesIO()
    # A CJK font often exists in one weight only (WenQuanYi Zen Hei is "medium"); the
    # nearest weight is right, so matplotlib's log line about it is only noise.
    log = logging.getLogger("matplotlib.font_manager")
    quiet = _DropFontWeightNotice()
    log.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing")
            fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        log.removeFilter(quiet)
    return buf.getvalue()


class _DropFontWeightNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("findfont: Failed to find font weight")


def plot_attention(model_path_or_run: str | Path, text: str, out_dir: str | Path,
                   layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                   max_tokens: int = 64) -> list[Path]:
    """Write attention heatmaps of ``text`` into ``out_dir``; return the PNG paths.

    ``layers``/``heads`` choose what to draw (default: all; negative counts from the
    end). Without ``heads`` each layer gives one picture with a grid of all its heads,
    ``layer_00.png``; with ``heads`` each chosen (layer, head) gives its own picture,
    ``layer_00_head_03.png``. The text is cut to ``max_tokens`` tokens (and to the
    model's context) so that the labels stay legible.
    """
    from ..hub import load_pretrained
    from ..io import atomic_write_bytes, ensure_writable_dir
    from .fonts import readable_labels

    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    model, tokenizer = load_pretrained(model_path_or_run)
    if tokenizer is None:
        raise CheckpointError(f"{model_path_or_run} has no tokenizer; attention maps need one "
                              "to show the tokens")
    from ..models.gpt import GPT

    if not isinstance(model, GPT):
        raise CheckpointError(f"attention maps support lmforge GPT models; "
                              f"{model_path_or_run} holds a {type(model).__name__}")
    ids = tokenizer.encode(text)
    if not ids:
        raise DataError("the text is empty: there are no tokens to show")
    limit = min(max_tokens, model.config.max_seq_len)
    if len(ids) > limit:
        warnings.warn(f"the text has {len(ids)} tokens; drawing the first {limit}",
                      stacklevel=2)
        ids = ids[:limit]
    layer_ids = _check_indices("layer", layers, model.config.n_layer)
    head_ids = _check_indices("head", heads, model.config.n_head)
    device = next(model.parameters()).device
    _, weights = gpt_attention(model, torch.tensor([ids], device=device))
    labels = readable_labels(token_labels(tokenizer, ids))
    out = ensure_writable_dir(out_dir)
    paths: list[Path] = []
    for layer in layer_ids:
        w = weights[layer][0]  # (h, T, T)
        if heads is None:
            path = out / f"layer_{layer:02d}.png"
            atomic_write_bytes(path, _draw(w, head_ids, labels, f"layer {layer}"))
            paths.append(path)
            continue
        for head in head_ids:
            path = out / f"layer_{layer:02d}_head_{head:02d}.png"
            atomic_write_bytes(path, _draw(w, [head], labels, f"layer {layer}"))
            paths.append(path)
    return paths
