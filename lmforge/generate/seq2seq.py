"""Text in, text out for the encoder-decoder models (translation).

``translate(model, tokenizer, texts)`` encodes each source text, decodes greedily
(``beams=1``) or by beam search with the GNMT length penalty (``beams=K``; rules in
:mod:`lmforge.models.beam`), optionally never repeating an n-gram
(``no_repeat_ngram_size``), and returns the target texts. It works for the
:class:`~lmforge.models.transformer.Transformer` and the RNN
:class:`~lmforge.models.rnn.Seq2Seq`, which differ only in how the source padding is
given (a mask or lengths). ``lmforge generate RUN --prompt TEXT`` calls it for these
models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import LmforgeError
from ..models.rnn import Seq2Seq, collate_pairs, strip_ids
from ..models.transformer import Transformer

ENCODER_DECODERS = (Transformer, Seq2Seq)


def is_encoder_decoder(model: Any) -> bool:
    """True for the models :func:`translate` decodes."""
    return isinstance(model, ENCODER_DECODERS)


def translate(model: Any, tokenizer: Any, texts: Sequence[str], *, beams: int = 1,
              max_new_tokens: int = 64, alpha: float = 0.6, batch_size: int = 32,
              no_repeat_ngram_size: int = 0) -> list[str]:
    """The target text of every source text (``max_new_tokens`` tokens at most)."""
    if not is_encoder_decoder(model):
        raise LmforgeError(f"{type(model).__name__} is not an encoder-decoder model")
    if beams < 1 or max_new_tokens < 1:
        raise LmforgeError("beams and max_new_tokens must be >= 1")
    cfg = model.config
    limit = getattr(cfg, "max_seq_len", None)
    max_len = min(max_new_tokens + 1, limit) if limit else max_new_tokens + 1
    out: list[str] = []
    for lo in range(0, len(texts), batch_size):
        src = tokenizer.encode_batch(list(texts[lo:lo + batch_size]))
        if any(len(s) == 0 for s in src):
            raise LmforgeError("every source text needs at least one token")
        if limit and max(len(s) for s in src) > limit:
            raise LmforgeError(f"a source text is longer than the model's max_seq_len "
                               f"({limit} tokens)")
        batch = collate_pairs(src, pad_id=cfg.pad_id, bos_id=cfg.bos_id, eos_id=cfg.eos_id)
        pad_info = batch["src_lengths"] if isinstance(model, Seq2Seq) else \
            batch["src"] != cfg.pad_id
        with torch.inference_mode():
            if beams == 1:
                rows = model.greedy_decode(batch["src"], pad_info, max_len=max_len,
                                           no_repeat_ngram_size=no_repeat_ngram_size).tolist()
            else:
                rows = [hyps[0].tokens for hyps in model.beam_search(
                    batch["src"], pad_info, beam_size=beams, max_len=max_len, alpha=alpha,
                    no_repeat_ngram_size=no_repeat_ngram_size)]
        out += [tokenizer.decode(strip_ids(r, cfg.eos_id, cfg.pad_id)) for r in rows]
    return out
