"""Built-in corpora: a bilingual world with exact probabilities, and real local code.

* :mod:`lmforge.corpora.world`: a stochastic grammar rendering every derivation in
  Chinese and English. ``P(sentence)`` is the product of the choice probabilities along
  its unique derivation; its surprisal is ``-log2 P`` bits; the entropy is
  ``H = E[-log2 P]``. For any model ``Q``, the expected NLL on held-out sentences,
  ``E[-log2 Q(s)]``, is a cross-entropy and so ``>= H`` (Gibbs' inequality), with equality
  only for ``Q = P``: a model's bits/sentence against the sentences' true surprisal
  measures how close it is to optimal. An LM corpus item is one sentence in one language
  (a fair coin), so its surprisal is ``1 +`` the derivation's bits.
* :mod:`lmforge.corpora.stdlib`: the running interpreter's standard-library ``.py`` files
  (the ``python-stdlib`` corpus).

See docs/corpora.md.
"""

from .stdlib import iter_stdlib_documents, stdlib_dir, stdlib_files, stdlib_identifiers
from .world import (
    LANGS,
    SPLITS,
    Mention,
    Segment,
    Sentence,
    World,
    WorldText,
    accepts,
    accepts_any,
    default_world,
    detect_lang,
    entropy_bits,
    iter_lm_corpus,
    lm_corpus,
    lm_entropy_bits,
    lm_surprisal_bits,
    parse,
    sentences,
    stats,
    surprisal_bits,
    write_lm_corpus,
)

__all__ = [
    "LANGS", "SPLITS", "Mention", "Segment", "Sentence", "World", "WorldText", "accepts",
    "accepts_any", "default_world", "detect_lang", "entropy_bits", "iter_lm_corpus",
    "iter_stdlib_documents", "lm_corpus", "lm_entropy_bits", "lm_surprisal_bits", "parse",
    "sentences", "stats", "stdlib_dir", "stdlib_files", "stdlib_identifiers",
    "surprisal_bits", "write_lm_corpus",
]
