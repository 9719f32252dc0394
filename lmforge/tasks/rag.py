r"""Generative question answering over retrieved passages (retrieval-augmented generation,
the ``answer`` task of ``lmforge finetune``).

For a question :math:`q` the retriever (:class:`~lmforge.retrieval.index.Index`: BM25,
dense or hybrid) returns the :math:`k` best passages :math:`P_1 \dots P_k` of the
collection, and an encoder-decoder writes the answer from one input text

.. math::

    x = \texttt{question: } q \texttt{ context: } P_1 \, P_2 \cdots P_k
    \quad (:func:`~lmforge.retrieval.ask.rag_input`),
    \qquad \hat a = \arg\max_a p_\theta(a \mid x)

(beam search, :func:`lmforge.generate.seq2seq.translate`). It is trained by
teacher-forced cross-entropy on :math:`(x, a)` with the passages the retriever gives
for each training question, so it learns to read past the passages that do not answer.
A question without an answer (SQuAD 2.0's ``is_impossible``) has the target
:data:`NO_ANSWER`, which the predictor reports as ``""``.

Reported beside EM and F1 (:func:`lmforge.eval.qa.qa_scores`: SQuAD for English, CMRC 2018
for Chinese):

* ``gold_in_passages``: the share of answerable questions with a gold answer's text in
  the retrieved passages, the ceiling of a reader that copies;
* ``answer_in_passages``: the share of non-empty answers found word for word in the
  passages (grounded answers; the rest are written from the model's memory).

**Counterfactual copies** (``data.counterfactual: n``): a model trained on a closed world
can answer a seen question from memory. Each answerable training question gets ``n``
copies in which every occurrence of its answer, in the passages, the question and the
target, is replaced by the answer of another training question of the same fact (the
record's ``fact``, else any) and language, drawn with the run's seed; the copy is only
answered by reading.

The collection is the world's pages (``data.world: qa``), the user's documents
(``retrieval.docs``: JSONL or folders of ``.txt``, :func:`~lmforge.retrieval.docs.read_docs`),
or else the distinct contexts of the user's SQuAD files. It is indexed once into
``<run>/index`` (:func:`open_run_index`), which ``lmforge evaluate`` and
``lmforge qa ask`` use afterwards. A run trained with a key has its index encrypted
(``docs.sqlite`` and the dense files, :mod:`lmforge.retrieval.store`), which these then
open in memory with the same key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from ..retrieval.ask import join_passages, rag_input
from .seq2seq_config import RetrievalConfig, Seq2SeqRecipe

__all__ = ["NO_ANSWER", "INDEX_DIR", "squad_collection", "open_run_index",
           "rag_records", "counterfactual", "load_qa_pairs"]

NO_ANSWER = "[no answer]"
INDEX_DIR = "index"


def squad_collection(records: Sequence[dict]) -> list[dict]:
    """The distinct contexts of SQuAD records as documents ``{"id", "title", "text"}``,
    in order of first use; the id is the title (or ``context``) and a number."""
    seen: dict[str, dict] = {}
    for r in records:
        if r["context"] not in seen:
            title = r.get("title") or "context"
            seen[r["context"]] = {"id": f"{title}#{len(seen)}", "title": r.get("title", ""),
                                  "text": r["context"]}
    return list(seen.values())


def open_run_index(run_dir: Path, cfg: RetrievalConfig, docs: Sequence[dict] | None = None):
    """The run's index (``<run>/index``), built from ``docs`` the first time (a resumed
    run reuses it; documents already there are skipped)."""
    from ..retrieval.index import Index

    folder = Path(run_dir) / INDEX_DIR
    if (folder / "docs.sqlite").exists():
        index = Index.open(folder)
    else:
        index = Index.create(folder, encoder=cfg.encoder if cfg.mode != "bm25" else None,
                             dense=None if cfg.mode == "bm25" else "exact",
                             max_words=cfg.max_words, overlap=cfg.overlap)
    if docs is not None:
        index.add(docs)
    return index


def _contains(passages: str, text: str) -> bool:
    return bool(text) and " ".join(text.split()) in passages


def rag_records(records: Sequence[dict], index, cfg: RetrievalConfig) -> list[dict]:
    """Each question record (``id``, ``question``, ``answers``, optional ``lang``,
    ``type`` and ``fact``) with its retrieved passages: ``src`` (:func:`rag_input`), ``tgt`` (the first
    answer, or :data:`NO_ANSWER`), ``context`` (the passages, white space collapsed),
    ``doc_ids`` (theirs, best first) and ``gold_in_passages`` (None when unanswerable)."""
    out = []
    for r in records:
        hits = index.search(r["question"], cfg.k, cfg.mode)
        passages = [h.text for h in hits]
        context = join_passages(passages)
        golds = [a["text"] for a in r["answers"]]
        rec = {"id": r["id"], "src": rag_input(r["question"], passages),
               "tgt": golds[0] if golds else NO_ANSWER, "question": r["question"],
               "answers": r["answers"], "context": context,
               "doc_ids": [h.doc_id for h in hits],
               "gold_in_passages": any(_contains(context, g) for g in golds) if golds
               else None}
        for key in ("lang", "type", "fact"):
            if r.get(key) is not None:
                rec[key] = r[key]
        out.append(rec)
    return out


def counterfactual(records: Sequence[dict], n: int, seed: int) -> list[dict]:
    """``n`` copies of each answerable record with its answer swapped (module docstring);
    a record whose pool holds no other answer gets none."""
    pools: dict[tuple, list[str]] = {}
    for r in records:
        if r["answers"]:
            key = (r.get("fact"), r.get("lang"))
            if r["tgt"] not in pools.setdefault(key, []):
                pools[key].append(r["tgt"])
    rng = random.Random(seed)
    out = []
    for r in records:
        others = [v for v in pools.get((r.get("fact"), r.get("lang")), []) if v != r["tgt"]]
        if not r["answers"] or not others:
            continue
        for i in range(n):
            new = rng.choice(others)
            out.append({**r, "id": f"{r['id']}~cf{i + 1}", "src": r["src"].replace(r["tgt"], new),
                        "tgt": new, "context": r["context"].replace(r["tgt"], new),
                        "question": r["question"].replace(r["tgt"], new),
                        "answers": [{"text": new, "answer_start": -1}]})
    return out


def load_qa_pairs(recipe: Seq2SeqRecipe, run_dir: Path) -> tuple[dict[str, list[dict]],
                                                                 dict | None]:
    """``(splits, card)`` of the ``answer`` task: the questions of the world's QA set or
    of the user's SQuAD files, each with its retrieved passages (:func:`rag_records`);
    the collection is indexed into ``<run>/index`` first."""
    from ..data.squad import read_squad
    from ..retrieval.docs import read_docs
    from .datasets import hold_out

    d, cfg = recipe.data, recipe.retrieval
    card = None
    if d.world is not None:
        from ..corpora.tasks import render_task_set

        ts = render_task_set("qa", seed=recipe.run.seed, sizes=d.world_sizes or None,
                             langs=tuple(d.langs))
        questions, card, docs = dict(ts.splits), ts.card, ts.documents
    else:
        train = read_squad(d.train)
        val = read_squad(d.val) if d.val is not None else None
        if val is None:
            train, val = hold_out(train, d.val_fraction, recipe.run.seed, d.train,
                                  what="questions")
        questions = {"train": train, "val": val}
        for path in d.test:
            questions[Path(path).stem] = read_squad(path)
        docs = ([doc for path in cfg.docs for doc in read_docs(path)] if cfg.docs
                else squad_collection([r for v in questions.values() for r in v]))
    with open_run_index(run_dir, cfg, docs) as index:
        splits = {name: rag_records(recs, index, cfg) for name, recs in questions.items()}
    if d.counterfactual:
        splits["train"] += counterfactual(splits["train"], d.counterfactual, recipe.run.seed)
    return splits, card
