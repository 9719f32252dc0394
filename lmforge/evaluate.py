"""``lmforge evaluate``: perplexity and bits per document on held-out text.

For documents ``d`` with tokens ``x_1..x_n`` (plus the closing ``eos``):

* bits per document = ``-sum_t log2 p(x_t | x_<t)``, averaged over documents;
* perplexity = ``exp(total NLL in nats / total predicted tokens)``.

When a JSONL file carries the exact surprisal of each text in a ``bits`` field (as the
world corpus's files do), the report also gives the true mean and the ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


@dataclass
class EvalReport:
    documents: int
    tokens: int
    perplexity: float
    bits_per_document: float
    true_bits: float | None = None

    def lines(self) -> list[str]:
        out = [f"documents: {self.documents}, tokens: {self.tokens}",
               f"perplexity: {self.perplexity:.3f}",
               f"bits/document: {self.bits_per_document:.2f}"]
        if self.true_bits is not None:
            out.append(f"bits/sentence: model {self.bits_per_document:.1f}, true "
                       f"{self.true_bits:.1f} (ratio {self.bits_per_document / self.true_bits:.2f})")
        return out


def _true_bits(paths: list[str], field: str) -> float | None:
    """Mean of a numeric ``bits`` field when every JSONL record that is a document has one.

    The files are read as :mod:`lmforge.data.readers` reads them (a UTF-8 byte-order mark
    is dropped; a record whose ``field`` is null or blank is no document).
    """
    from .data.readers import iter_lines

    if not paths or not all(str(p).endswith(".jsonl") and Path(p).is_file() for p in paths):
        return None
    values = []
    for p in paths:
        for line in iter_lines(p):
            if not line.strip():
                continue
            rec = json.loads(line)  # valid: the reader has read the file already
            text = rec.get(field)
            if not isinstance(text, str) or not text.strip():
                continue
            bits = rec.get("bits")
            if isinstance(bits, bool) or not isinstance(bits, (int, float)):
                return None
            values.append(float(bits))
    return sum(values) / len(values) if values else None


def evaluate_texts(model_path: str | Path, data: list[str], field: str = "text",
                   column: str = "text", batch_size: int = 32,
                   quantize: str | None = None) -> EvalReport:
    """Score every document of ``data`` with the model at ``model_path`` (``quantize``:
    as :func:`lmforge.hub.load_pretrained`)."""
    from .data.readers import iter_documents
    from .eval.lm import perplexity_of_texts, score_texts
    from .hub import load_pretrained

    model, tok = load_pretrained(model_path, quantize=quantize)
    if tok is None:
        raise DataError(f"{model_path} has no tokenizer.json")
    texts = [d.text for d in iter_documents(data, field=field, column=column)]
    if not texts:
        raise DataError(f"empty corpus: no documents in {' '.join(map(str, data))}")
    bits = score_texts(model, tok, texts, batch_size=batch_size)
    ppl = perplexity_of_texts(model, tok, texts, batch_size=batch_size)
    return EvalReport(len(texts), int(ppl["tokens"]), float(ppl["perplexity"]),
                      sum(bits) / len(bits), _true_bits(data, field))


__all__ = ["EvalReport", "evaluate_texts"]
