r"""Translation metrics: corpus BLEU and chrF (computed by sacrebleu), exact match, and the
same scores per sentence for an errors file.

sacrebleu computes the numbers (lmforge does not re-implement them; the tests check that
:func:`corpus_scores` equals the ``sacrebleu`` command line on the same files) and its
*signature* says how they were computed (``nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|
version:2.6.0``): report it with the score, since BLEU under another tokenizer is another
number. One reference per hypothesis. BLEU and chrF are on sacrebleu's 0..100 scale.

BLEU
----
For :math:`n = 1..4` the modified precision sums *clipped* n-gram counts over the whole
corpus before dividing (not a mean of sentence precisions): a hypothesis n-gram counts at
most as often as it occurs in its reference,

.. math::

    p_n = \frac{\sum_s \sum_{g \in h_s} \min(\#_{h_s}(g), \#_{r_s}(g))}
               {\sum_s \sum_{g \in h_s} \#_{h_s}(g)}, \qquad
    \mathrm{BP} = \min\bigl(1, e^{1 - r/c}\bigr), \qquad
    \mathrm{BLEU} = 100 \cdot \mathrm{BP} \cdot \exp\Bigl(\tfrac14 \sum_{n=1}^{4} \log p_n\Bigr)

with :math:`c` the hypothesis and :math:`r` the reference length in tokens, summed over
the corpus (:math:`c = 0` gives BP = 0). The brevity penalty replaces recall: short
output has high precision but is penalised. Smoothing (sacrebleu's default ``exp``, the
NIST ``mteval`` one): an order with no clipped match gets :math:`p_n = 1 / (2^k \cdot
\text{total}_n)`, :math:`k` counting the orders up to :math:`n` with no match; no match
at any order gives 0, and so does an order with no n-gram at all (:math:`\text{total}_n
= 0`). sacrebleu smooths at corpus level too, where it matters only for tiny or hopeless
outputs; at sentence level it is the rule. Sentence BLEU here (as in
``sacrebleu --sentence-level``) also uses the *effective order*: orders in which the
hypothesis has no n-gram at all (fewer than :math:`n` tokens) are left out of the mean.

chrF
----
On the text with all whitespace removed, for character n-grams :math:`n = 1..6`, summed
over the corpus: :math:`P_n = \text{matches}_n / \text{hyp}_n`, :math:`R_n =
\text{matches}_n / \text{ref}_n`. :math:`P` and :math:`R` are their means over the orders
that both sides have n-grams of; then

.. math::  \mathrm{chrF}_\beta = 100 \cdot \frac{(1 + \beta^2) P R}{\beta^2 P + R},
           \qquad \beta = 2

(recall weighs :math:`\beta^2 = 4` times as much as precision). chrF needs no tokenizer.

Tokenization
------------
BLEU counts word n-grams, so it needs words. ``13a`` (the WMT default, from
``mteval-v13a.pl``) splits on spaces and splits off ASCII punctuation. Chinese has no spaces: under
``13a`` a whole Chinese clause would be one "word" and matches would almost never
happen. ``zh`` puts every Chinese character on its own (and reads the rest as ``13a``),
so Chinese BLEU is over character n-grams, the WMT convention for Chinese targets. The
default is ``zh`` when the target language is Chinese (``target_lang`` ``zh``, also
``zh-CN``, ``zh_Hant``: the primary subtag), else ``13a``; ``tokenize=`` overrides.

Exact match
-----------
:math:`\mathrm{EM} = \frac1N \sum_i [\,\mathrm{strip}(h_i) = \mathrm{strip}(r_i)\,]`, the
share (0..1, not 0..100) of hypotheses equal to their reference after stripping the outer
whitespace.

sacrebleu is the ``generation`` extra: ``pip install 'lmforge[generation]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import LmforgeError
from .classification import MetricInputError, MetricOptionError

__all__ = ["corpus_scores", "sentence_scores", "default_tokenize"]


def _metrics(target_lang: str, tokenize: str | None, *, sentence: bool) -> tuple[Any, Any]:
    """sacrebleu's ``(BLEU, CHRF)`` metric objects (imported lazily), BLEU with
    ``tokenize`` or else the default for ``target_lang``."""
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise LmforgeError("translation metrics need sacrebleu: pip install "
                           "'lmforge[generation]'") from None
    default = default_tokenize(target_lang)  # checks target_lang even when overridden
    tokenize = default if tokenize is None else tokenize
    if not isinstance(tokenize, str) or tokenize not in BLEU.TOKENIZERS:
        raise MetricOptionError(f"tokenize={tokenize!r} is not one of "
                                f"{', '.join(BLEU.TOKENIZERS)}")
    try:
        bleu = BLEU(tokenize=tokenize, effective_order=sentence)
    except (ImportError, OSError, RuntimeError) as e:  # no MeCab, a model not downloaded
        why = " ".join(str(e).split()) or type(e).__name__
        raise MetricOptionError(f"tokenize={tokenize!r} cannot be used here: {why}"
                                ) from None
    return bleu, CHRF()


def default_tokenize(target_lang: str) -> str:
    """The BLEU tokenizer for a target language: ``zh`` for Chinese, ``13a`` otherwise."""
    if not isinstance(target_lang, str) or not target_lang.strip():
        raise MetricOptionError(f"target_lang must be a language code such as 'en' or 'zh', "
                                f"got {target_lang!r}")
    primary = target_lang.strip().replace("_", "-").split("-")[0].lower()
    return "zh" if primary == "zh" else "13a"


def check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise MetricInputError(f"{name} must be a list of strings, got "
                               f"{type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise MetricInputError(f"{name}[{i}] is {type(t).__name__}, expected a string")
    return list(texts)


def paired_texts(outputs: Any, references: Any, name: str = "hypotheses"
                 ) -> tuple[list[str], list[str]]:
    """Both lists checked (strings, one reference per output, not empty); ``name`` is
    what the outputs are called in the error."""
    outs, refs = check_texts(outputs, name), check_texts(references, "references")
    if len(outs) != len(refs):
        raise MetricInputError(f"{len(outs)} {name} but {len(refs)} references; "
                               f"expected one reference per {name[:-1]}")
    if not outs:
        raise MetricInputError(f"{name} and references are empty: there is nothing to "
                               "score")
    return outs, refs


def _same(hyp: str, ref: str) -> bool:
    return hyp.strip() == ref.strip()


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], *,
                  target_lang: str, tokenize: str | None = None) -> dict[str, Any]:
    """Corpus BLEU, chrF and exact match of ``hypotheses`` against one reference each.

    Returns ``{"bleu", "chrf"}`` (0..100), ``"exact_match"`` (0..1), ``"n"`` (pairs),
    ``"bleu_signature"``, ``"chrf_signature"`` (sacrebleu's), and the parts of BLEU:
    ``"bleu_precisions"`` (:math:`p_1..p_4`, 0..100, smoothed), ``"brevity_penalty"``,
    ``"hyp_len"`` and ``"ref_len"`` (tokens). ``tokenize`` defaults to
    :func:`default_tokenize` of ``target_lang``.
    """
    hyps, refs = paired_texts(hypotheses, references)
    bleu, chrf = _metrics(target_lang, tokenize, sentence=False)
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {"bleu": b.score, "chrf": c.score,
            "exact_match": sum(map(_same, hyps, refs)) / len(hyps), "n": len(hyps),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "bleu_precisions": list(b.precisions), "brevity_penalty": b.bp,
            "hyp_len": b.sys_len, "ref_len": b.ref_len}


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str], *,
                    target_lang: str, tokenize: str | None = None) -> list[dict[str, Any]]:
    """``{"bleu", "chrf", "exact"}`` for each pair: smoothed sentence BLEU with the
    effective order (as ``sacrebleu --sentence-level``), sentence chrF (both 0..100) and
    whether the stripped texts are equal. For finding the worst translations; a corpus
    score is not the mean of these."""
    hyps, refs = paired_texts(hypotheses, references)
    bleu, chrf = _metrics(target_lang, tokenize, sentence=True)
    return [{"bleu": bleu.sentence_score(h, [r]).score,
             "chrf": chrf.sentence_score(h, [r]).score, "exact": _same(h, r)}
            for h, r in zip(hyps, refs, strict=True)]
