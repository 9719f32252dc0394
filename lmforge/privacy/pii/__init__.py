"""PII detection and de-identification for Chinese and English text.

``analyze(text)`` finds e-mails, phone numbers, mainland resident IDs, bank cards,
passports, IP addresses, URLs, dates of birth, addresses and person names
(:mod:`.analyzer`); ``anonymize(text, spans, operator)`` replaces them by ``mask``,
``redact``, ``hash`` or ``fake`` (:mod:`.operators`); :mod:`.redact_files` does both over
.txt/.jsonl/.csv files; :mod:`.evalset` renders a labelled test set and scores
recognizers on it.
"""

from .analyzer import RECOGNIZERS, analyze, check_types
from .operators import OPERATORS, anonymize
from .spans import PII_TYPES, PiiSpan

__all__ = ["OPERATORS", "PII_TYPES", "RECOGNIZERS", "PiiSpan", "analyze", "anonymize",
           "check_types"]
