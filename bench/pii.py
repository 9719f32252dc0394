"""PII recognizers: lmforge against Presidio's pattern recognizers on the rendered set.

    python bench/pii.py [--docs 300] [--seed 1]

Scores every type on the rendered documents (:mod:`lmforge.privacy.pii.evalset`) in
Chinese and English, for the four template sets (``dev``, ``heldout``, ``heldout2``, ``heldout3``), and
runs Presidio's predefined pattern recognizers (e-mail, phone, credit card, IP, URL,
date, US passport) on the English documents as the peer. Presidio's person recognizer
needs a spaCy model, which the package registry does not carry, so the peer has no
names; its phone recognizer sees national numbers of its default regions. Presidio has
no date-of-birth type: its DATE_TIME results are scored as DATE_OF_BIRTH. The peer keeps
every result, as Presidio's AnalyzerEngine does by default (``score_threshold=0``: its
phone recognizer scores 0.4 without the context words an NLP engine supplies). Scores are
precision, recall and F2 (IoU ≥ 0.5); the ceiling is 1.0 for every type (every gold span
is PII, no negative is). Prints a table, then one JSON line per figure.
"""

from __future__ import annotations

import argparse
import time

from _common import emit, machine_line

from lmforge.privacy.pii import PiiSpan, analyze
from lmforge.privacy.pii.evalset import render_pii_set, score

PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "BANK_CARD",
                  "IP_ADDRESS": "IP", "URL": "URL", "DATE_TIME": "DATE_OF_BIRTH",
                  "US_PASSPORT": "PASSPORT"}
PEER_TYPES = tuple(dict.fromkeys(PRESIDIO_TYPES.values()))


def presidio_predict():
    """Presidio's pattern recognizers, offline (tldextract's bundled suffix list)."""
    import tldextract
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsPassportRecognizer,
    )

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    recognizers = [R() for R in (EmailRecognizer, PhoneRecognizer, CreditCardRecognizer,
                                 IpRecognizer, UrlRecognizer, DateRecognizer,
                                 UsPassportRecognizer)]

    def predict(text: str) -> list[PiiSpan]:
        found = [r for rec in recognizers
                 for r in rec.analyze(text, entities=rec.supported_entities, nlp_artifacts=None)]
        found = EntityRecognizer.remove_duplicates(found)
        return [PiiSpan(r.start, r.end, PRESIDIO_TYPES[r.entity_type], r.score, "presidio")
                for r in found if r.entity_type in PRESIDIO_TYPES]

    return predict


def timed(docs, predict, types=None) -> tuple[dict, float]:
    t = time.perf_counter()
    res = score(docs, predict, types) if types else score(docs, predict)
    return res, len(docs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(machine_line())
    peer = presidio_predict()
    analyze("warm up jieba 你好")
    for templates in ("dev", "heldout", "heldout2", "heldout3"):
        for lang in ("zh", "en"):
            docs = render_pii_set(lang, args.docs, args.seed, templates)
            ours, speed = timed(docs, analyze)
            theirs, peer_speed = timed(docs, peer, PEER_TYPES) if lang == "en" else ({}, None)
            print(f"\n{lang} {templates}: {len(docs)} documents; lmforge {speed:.0f} docs/s"
                  + (f", presidio {peer_speed:.0f} docs/s" if peer_speed else ""))
            print(f"{'type':<14}{'n':>5}{'P':>7}{'R':>7}{'F2':>7}  | presidio {'P':>6}{'R':>7}{'F2':>7}")
            for t, m in ours.items():
                p = theirs.get(t)
                peer_cols = f"{p['precision']:>6.3f}{p['recall']:>7.3f}{p['f2']:>7.3f}" if p \
                    else f"{'-':>6}{'-':>7}{'-':>7}"
                print(f"{t:<14}{m['support']:>5}{m['precision']:>7.3f}{m['recall']:>7.3f}"
                      f"{m['f2']:>7.3f}  |          {peer_cols}")
            for t, m in ours.items():
                p = theirs.get(t)
                emit({"bench": "pii", "metric": f"{lang}_{templates}_{t}_f2", "lmforge": m["f2"],
                      "precision": m["precision"], "recall": m["recall"], "support": m["support"],
                      "peer": p["f2"] if p else None, "peer_name": "presidio-patterns",
                      "ratio": m["f2"] / p["f2"] if p and p["f2"] else None, "ceiling": 1.0})
            emit({"bench": "pii", "metric": f"{lang}_{templates}_docs_per_s", "lmforge": speed,
                  "peer": peer_speed, "peer_name": "presidio-patterns",
                  "ratio": speed / peer_speed if peer_speed else None})


if __name__ == "__main__":
    main()
