"""word2vec speed and quality: lmforge against gensim on the same corpus.

Both train on the same token lists with the same settings (``workers`` threads,
vector_size 100, window 5, negative 5, min_count 5, sample 1e-3, 1 epoch by default).
Words/s counts corpus tokens per second of wall time *including* the vocabulary build
(gensim: ``Word2Vec(sentences, ...)``; lmforge: ``Word2Vec(...).fit(sentences)``). numba
compiles lmforge's kernel once before timing (its on-disk cache makes that a one-off);
gensim's Cython is precompiled. Quality: accuracy on the world corpus's planted analogies
(city-country, name-pronoun sections; 3CosAdd), and class purity (share of class words
whose nearest class word shares the class). The stdlib identifier corpus has no gold
analogies, so only its speed is reported. Prints a table, then one JSON line per run.
``ratio`` is lmforge words/s ÷ gensim words/s.

    python bench/word2vec.py [--world 200000] [--stdlib-tokens 2000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from lmforge.corpora import lm_corpus, stdlib_identifiers
from lmforge.embeddings import (
    KeyedVectors,
    Word2Vec,
    class_purity,
    evaluate_analogies,
    planted_analogies,
    tokenize,
    word_classes,
)


def world_corpus(n: int) -> list[list[str]]:
    return [tokenize(d.text) for d in lm_corpus("train", n, 0) if d.lang == "en"]


def stdlib_corpus(n_tokens: int, sent_len: int = 1000) -> list[list[str]]:
    toks = list(itertools.islice(stdlib_identifiers(), n_tokens))
    return [toks[i:i + sent_len] for i in range(0, len(toks), sent_len)]


def quality(kv: KeyedVectors) -> dict:
    an = planted_analogies("en", tokenize)
    an = {k: v for k, v in an.items() if k in ("city-country", "name-pronoun")}
    r = evaluate_analogies(kv, an)
    return {"analogy_acc": round(r["accuracy"], 4),
            "city_country_acc": round(r["sections"]["city-country"]["accuracy"], 4),
            "class_purity": round(class_purity(kv, word_classes("en", tokenize)), 4)}


def run(impl: str, sents, sg: bool, args) -> tuple[float, KeyedVectors]:
    kw = dict(vector_size=args.dim, window=5, negative=5, min_count=5, sample=1e-3,
              epochs=args.epochs, workers=args.workers, seed=1, alpha=0.025,
              min_alpha=1e-4)
    t0 = time.perf_counter()
    if impl == "gensim":
        from gensim.models import Word2Vec as GWord2Vec
        g = GWord2Vec(sents, sg=int(sg), hs=0, **kw)
        dt = time.perf_counter() - t0
        return dt, KeyedVectors(list(g.wv.index_to_key), g.wv.vectors)
    m = Word2Vec(sg=sg, hs=False, **kw).fit(sents)
    return time.perf_counter() - t0, m.wv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=200000, help="world LM items (~half EN)")
    ap.add_argument("--stdlib-tokens", type=int, default=2000000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    Word2Vec(min_count=1, window=2, vector_size=8, epochs=1).fit([["a", "b", "c"]] * 5)
    corpora = {"world-en": world_corpus(args.world)}
    if args.stdlib_tokens:
        corpora["python-stdlib"] = stdlib_corpus(args.stdlib_tokens)
    rows = []
    for cname, sents in corpora.items():
        ntok = sum(map(len, sents))
        for sg in (True, False):
            res = {}
            for impl in ("gensim", "lmforge"):
                best, kv = None, None
                for _ in range(args.repeats):
                    dt, kv = run(impl, sents, sg, args)
                    best = dt if best is None else min(best, dt)
                rec = {"bench": "word2vec", "corpus": cname, "model": "sg" if sg else "cbow",
                       "impl": impl, "tokens": ntok, "epochs": args.epochs,
                       "workers": args.workers, "dim": args.dim, "seconds": round(best, 3),
                       "words_per_s": round(ntok * args.epochs / best)}
                if cname == "world-en":
                    rec.update(quality(kv))
                res[impl] = rec
            res["lmforge"]["ratio"] = round(res["lmforge"]["words_per_s"]
                                            / res["gensim"]["words_per_s"], 3)
            rows += [res["gensim"], res["lmforge"]]
    print(f"{'corpus':14} {'model':5} {'impl':8} {'tokens':>9} {'words/s':>10} {'ratio':>6} "
          f"{'analogy':>8} {'purity':>7}")
    for r in rows:
        print(f"{r['corpus']:14} {r['model']:5} {r['impl']:8} {r['tokens']:9d} "
              f"{r['words_per_s']:10d} {r.get('ratio', ''):>6} {r.get('analogy_acc', '-'):>8} "
              f"{r.get('class_purity', '-'):>7}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
