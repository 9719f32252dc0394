"""Retrieval on the world's questions: BM25, dense (MiniLM, exact and HNSW) and hybrid.

The world's QA set (``--seed``, default 0) is rendered; its pages, both languages (252
with seed 0), are indexed three times with :class:`lmforge.retrieval.Index` and the
default passage options (at most 128 words, overlap 32):

- ``bm25``: ``dense=None`` (SQLite FTS5 BM25, jieba for Chinese);
- ``exact``: BM25 + all-MiniLM-L6-v2 vectors in a flat inner-product index;
- ``hnsw``: the same vectors in an HNSW graph (m 32, ef_search 64).

Every question of ``--splits`` (default ``test`` and ``test_unseen``, 2,000 questions,
half Chinese) is searched one at a time, as a user would, for its 10 best passages by
``bm25``, ``dense`` and ``hybrid`` (RRF of the two; a Chinese question is ranked by
BM25 alone, since MiniLM reads English only: see :mod:`lmforge.retrieval.index`). A
question's ranking is the document ids of those passages in rank order (a page with two
passages can take two places). The gold pages (``doc_ids``) by question type:

- ``single``: answerable, one page;
- ``unanswerable``: the page the fact would be on (the reader must see it to say "no
  answer"); one page;
- ``multihop``: two pages, the subject's and the bridge's; ``multihop_first`` scores the
  first (the question names its subject), ``multihop_both`` has every gold page in the
  top k (``all_recall@k``; the bridge is named only on the first page, so a single
  retrieval step finds it only by chance);
- ``all``: every question, its first gold page.

Metrics (:mod:`lmforge.eval.retrieval`): recall@1, 5 and 10 and MRR@10, for English,
Chinese and both. The issue's bar: hybrid recall@5 >= 0.95 on the answerable single-hop
questions (and on all questions' subject page), BM25 and dense beside it.

Also timed: building each index (the HNSW and exact builds embed every passage with
MiniLM), and queries per second of each mode (one query at a time, through
:meth:`Index.search`, MiniLM embedding the query included).

Run ``python bench/retrieval.py [--threads 1]``. Prints the tables headed by the machine
(CPU, ISA, torch threads), then one JSON object per figure: recall@5 of each (question
group, language, mode) with recall@1/10 and MRR beside it, build seconds and queries/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import emit, machine_line

from lmforge.corpora.tasks import render_task_set
from lmforge.eval.retrieval import all_recall_at_k, mrr, recall_at_k
from lmforge.retrieval import Index

K = 10
CUTOFFS = (1, 5, 10)
TARGET = 0.95
LANGS = ("en", "zh", "all")
# (index, search mode) per row of the tables
MODES = (("bm25", "bm25"), ("exact", "dense"), ("hnsw", "dense"), ("exact", "hybrid"),
         ("hnsw", "hybrid"))
# question group -> (question types, gold pages of a record, recall function)
GROUPS: dict[str, tuple[tuple[str, ...], Callable[[dict], list[str]], Callable]] = {
    "single": (("single",), lambda r: r["doc_ids"][:1], recall_at_k),
    "unanswerable": (("unanswerable",), lambda r: r["doc_ids"][:1], recall_at_k),
    "multihop_first": (("multihop",), lambda r: r["doc_ids"][:1], recall_at_k),
    "multihop_both": (("multihop",), lambda r: r["doc_ids"], all_recall_at_k),
    "all": (("single", "unanswerable", "multihop"), lambda r: r["doc_ids"][:1], recall_at_k),
}


def mode_name(index: str, mode: str) -> str:
    return mode if index == "bm25" else f"{mode}-{index}"


def build(folder: Path, docs: list[dict], dense: str | None) -> tuple[Index, float]:
    start = time.perf_counter()
    index = Index.create(folder, dense=dense)
    index.add(docs)
    return index, time.perf_counter() - start


def rank_all(index: Index, questions: list[dict], mode: str) -> tuple[list[list[str]], float]:
    """Each question's top-K passages as document ids, and the queries per second."""
    start = time.perf_counter()
    ranked = [[h.doc_id for h in index.search(q["question"], K, mode)] for q in questions]
    return ranked, len(questions) / (time.perf_counter() - start)


def scores(ranked: list[list[str]], questions: list[dict], group: str, lang: str) -> dict:
    """recall@1/5/10 and MRR@10 of the questions of ``group`` in ``lang``."""
    types, gold_of, recall = GROUPS[group]
    pick = [i for i, q in enumerate(questions)
            if q["type"] in types and lang in ("all", q["lang"])]
    rk, gold = [ranked[i] for i in pick], [gold_of(questions[i]) for i in pick]
    out = {f"r{k}": recall(rk, gold, k) for k in CUTOFFS}
    # MRR ranks the first gold page found; with every page needed it has no meaning
    out.update(mrr=mrr(rk, gold, K) if recall is recall_at_k else None, n=len(pick))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the world's QA set")
    ap.add_argument("--splits", default="test,test_unseen", help="splits, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                    "torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = args.splits.split(",")
    ts = render_task_set("qa", seed=args.seed)
    questions = [q for s in splits for q in ts.splits[s]]

    results: dict[str, dict] = {}
    built: dict[str, float] = {}
    qps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        indexes = {}
        for name, dense in (("bm25", None), ("exact", "exact"), ("hnsw", "hnsw")):
            indexes[name], built[name] = build(Path(tmp) / name, ts.documents, dense)
        n_docs, n_passages = indexes["bm25"].store.size()
        for index, mode in MODES:
            name = mode_name(index, mode)
            ranked, qps[name] = rank_all(indexes[index], questions, mode)
            results[name] = {(g, lang): scores(ranked, questions, g, lang)
                             for g in GROUPS for lang in LANGS}
        for ix in indexes.values():
            ix.close()

    print(machine_line())
    by_lang = {lang: sum(d["lang"] == lang for d in ts.documents) for lang in ("en", "zh")}
    print(f"world QA set, seed {args.seed}: {n_docs} pages (en {by_lang['en']}, zh "
          f"{by_lang['zh']}) -> {n_passages} passages; {len(questions)} questions "
          f"({' + '.join(splits)}); top {K} passages per question")
    print("index build: " + "; ".join(f"{n} {s:.1f} s" for n, s in built.items())
          + " (exact and hnsw embed every passage with MiniLM)")
    print()
    names = list(results)
    print(f"{'questions':<16}{'lang':<6}{'n':>5}  "
          + "".join(f"{n:>25}" for n in names))
    print(f"{'':<29}" + "".join(f"{'r@1  r@5 r@10  MRR':>25}" for _ in names))
    for g in GROUPS:
        for lang in LANGS:
            row = [results[n][g, lang] for n in names]
            print(f"{g:<16}{lang:<6}{row[0]['n']:>5}  " + "".join(
                f"{r['r1']:>7.3f}{r['r5']:>6.3f}{r['r10']:>6.3f}"
                + (f"{r['mrr']:>6.3f}" if r["mrr"] is not None else f"{'-':>6}") for r in row))
    print("(multihop_both: every gold page in the top k, all_recall@k; no MRR)")
    print()
    print(f"{'mode':<16}{'queries/s':>10}{'ms/query':>10}")
    for n in names:
        print(f"{n:<16}{qps[n]:>10.1f}{1e3 / qps[n]:>10.2f}")

    for n in names:
        for g in GROUPS:
            for lang in LANGS:
                r = results[n][g, lang]
                target = TARGET if (n.startswith("hybrid") and lang == "all"
                                    and g in ("single", "all")) else None
                prefix = "all_recall" if g == "multihop_both" else "recall"
                emit({"bench": "retrieval", "metric": f"{prefix}_at_5_{g}_{lang}_{n}",
                      "lmforge": round(r["r5"], 4), "peer": None, "peer_name": None,
                      "ratio": None, "target": target,
                      "met": None if target is None else r["r5"] >= target,
                      "recall_at_1": round(r["r1"], 4), "recall_at_10": round(r["r10"], 4),
                      "mrr_at_10": None if r["mrr"] is None else round(r["mrr"], 4),
                      "questions": r["n"],
                      "seed": args.seed, "splits": splits})
    for name, seconds in built.items():
        emit({"bench": "retrieval", "metric": f"build_s_{name}", "lmforge": round(seconds, 2),
              "peer": None, "peer_name": None, "ratio": None, "target": None, "met": None,
              "documents": n_docs, "passages": n_passages})
    for n in names:
        emit({"bench": "retrieval", "metric": f"queries_per_s_{n}", "lmforge": round(qps[n], 1),
              "peer": None, "peer_name": None, "ratio": None, "target": None, "met": None,
              "k": K, "questions": len(questions)})


if __name__ == "__main__":
    main()
