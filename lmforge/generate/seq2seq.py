"""Text in, text out for the encoder-decoder models (translation).

``translate(model, tokenizer, texts)`` encodes each source text, decodes greedily
(``beams=1``) or by beam search with the GNMT length penalty (``beams=K``; rules in
:mod:`lmforge.models.beam`), optionally never repeating an n-gram
(``no_repeat_ngram_size``), and returns the target texts. It works for the
:class:`~lmforge.models.transformer.Transformer`, the RNN
:class:`~lmforge.models.rnn.Seq2Seq` and :class:`~lmforge.models.t5.T5`, which differ
only in how the source padding is given (a mask or lengths) and in their special ids
(:func:`special_ids`). ``lmforge generate RUN --prompt TEXT`` and ``lmforge translate``
call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import LmforgeError
from ..models.rnn import Seq2Seq, collate_pairs, strip_ids
from ..models.t5 import T5
from ..models.transformer import Transformer

ENCODER_DECODERS = (Transformer, Seq2Seq, T5)


def is_encoder_decoder(model: Any) -> bool:
    """True for the models :func:`translate` decodes."""
    return isinstance(model, ENCODER_DECODERS)


def special_ids(model: Any) -> dict[str, int]:
    """``{"pad_id", "bos_id", "eos_id"}`` of an encoder-decoder: ``bos_id`` is the token
    the decoder starts from (T5's decoder start, its pad)."""
    cfg = model.config
    if isinstance(model, T5):
        return {"pad_id": cfg.pad_token_id, "bos_id": cfg.decoder_start_token_id,
                "eos_id": cfg.eos_token_id}
    return {"pad_id": cfg.pad_id, "bos_id": cfg.bos_id, "eos_id": cfg.eos_id}


def _decode_rows(model: Any, src: torch.Tensor, pad_info: Any, beams: int, max_len: int,
                 alpha: float, no_repeat: int) -> list[list[int]]:
    if isinstance(model, T5):
        if beams == 1:
            return model.generate(src, pad_info, max_new_tokens=max_len,
                                  no_repeat_ngram_size=no_repeat).tolist()
        hyps = model.beam_search(src, pad_info, beam_size=beams, max_len=max_len,
                                 alpha=alpha, no_repeat_ngram_size=no_repeat)
    elif beams == 1:
        return model.greedy_decode(src, pad_info, max_len=max_len,
                                   no_repeat_ngram_size=no_repeat).tolist()
    else:
        hyps = model.beam_search(src, pad_info, beam_size=beams, max_len=max_len,
                                 alpha=alpha, no_repeat_ngram_size=no_repeat)
    return [h[0].tokens for h in hyps]


def translate(model: Any, tokenizer: Any, texts: Sequence[str], *, beams: int = 1,
              max_new_tokens: int = 64, alpha: float = 0.6, batch_size: int = 32,
              no_repeat_ngram_size: int = 0, max_source_tokens: int | None = None
              ) -> list[str]:
    """The target text of every source text (``max_new_tokens`` tokens at most). With
    ``max_source_tokens`` a longer source is cut to its first that many tokens (as the
    trainer cuts them); without, a source longer than the model's ``max_seq_len`` is an
    error."""
    if not is_encoder_decoder(model):
        raise LmforgeError(f"{type(model).__name__} is not an encoder-decoder model")
    if beams < 1 or max_new_tokens < 1 or no_repeat_ngram_size < 0:
        raise LmforgeError("beams and max_new_tokens must be >= 1, no_repeat_ngram_size >= 0")
    ids = special_ids(model)
    limit = getattr(model.config, "max_seq_len", None)
    max_len = min(max_new_tokens + 1, limit) if limit else max_new_tokens + 1
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for lo in range(0, len(texts), batch_size):
            src = tokenizer.encode_batch(list(texts[lo:lo + batch_size]))
            if max_source_tokens is not None:
                src = [s[:max_source_tokens] for s in src]
            if any(len(s) == 0 for s in src):
                raise LmforgeError("every source text needs at least one token")
            if limit and max(len(s) for s in src) > limit:
                raise LmforgeError(f"a source text is longer than the model's max_seq_len "
                                   f"({limit} tokens)")
            batch = collate_pairs(src, **ids)
            pad_info = batch["src_lengths"] if isinstance(model, Seq2Seq) else \
                batch["src"] != ids["pad_id"]
            with torch.inference_mode():
                rows = _decode_rows(model, batch["src"], pad_info, beams, max_len, alpha,
                                    no_repeat_ngram_size)
            out += [tokenizer.decode(strip_ids(r, ids["eos_id"], ids["pad_id"])) for r in rows]
    finally:
        model.train(was_training)
    return out
