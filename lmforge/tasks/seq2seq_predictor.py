"""A trained encoder-decoder as a predictor: text in, text out, and its scores.

``load_seq2seq(run)`` reads a translation or summarisation run (or one of its
checkpoints) with the decoding settings of its recipe. ``.generate(texts)`` decodes
(:func:`lmforge.generate.seq2seq.translate`: greedy or beam search with the GNMT length
penalty, optional no-repeat n-grams); ``.evaluate(records)`` scores ``{"src", "tgt"}``
records and lists the outputs that differ from their reference, worst first:

* :class:`Translator`: sacreBLEU BLEU and chrF with their signatures, and exact match
  (:mod:`lmforge.eval.translation`), in the target language;
* :class:`Summarizer`: ROUGE-1/2/L F1 (:mod:`lmforge.eval.summarization`), each record
  scored in its own language (``lang``: English on stemmed words, Chinese on
  characters); a split with both is the count-weighted mean of the two;
* :class:`Answerer`: generative QA over retrieved passages (:mod:`lmforge.tasks.rag`):
  SQuAD 2.0 EM and F1 (English; CMRC 2018 for Chinese, :func:`lmforge.eval.qa.qa_scores`),
  by question type where the records have one, and how many answers the passages hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..generate.seq2seq import is_encoder_decoder, translate
from .seq2seq_config import DecodeConfig, Seq2SeqRecipe

if TYPE_CHECKING:
    from ..privacy.keys import KeySource


class Seq2SeqPredictor:
    """``model`` and ``tokenizer`` with decoding defaults ``decode``; ``langs`` are the
    recipe's ``data.langs``; sources longer than ``max_source_tokens`` (None: the
    model's limit is an error) are cut."""

    max_source_tokens: int | None = None

    def __init__(self, model: Any, tokenizer: Any, decode: DecodeConfig,
                 langs: Sequence[str]):
        self.model, self.tokenizer, self.decode = model, tokenizer, decode
        self.langs = list(langs)

    def generate(self, texts: Sequence[str], *, beams: int | None = None,
                 alpha: float | None = None, no_repeat_ngram_size: int | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        """Each text's output; options left None take the recipe's ``decode``."""
        d = self.decode
        return translate(
            self.model, self.tokenizer, texts, beams=d.beams if beams is None else beams,
            alpha=d.alpha if alpha is None else alpha,
            no_repeat_ngram_size=(d.no_repeat_ngram_size if no_repeat_ngram_size is None
                                  else no_repeat_ngram_size),
            max_new_tokens=d.max_new_tokens if max_new_tokens is None else max_new_tokens,
            batch_size=d.batch_size, max_source_tokens=self.max_source_tokens)

    def score(self, hyps: list[str], records: Sequence[dict]) -> tuple[dict, list[float]]:
        """Corpus metrics and one sentence score per output (for ranking errors)."""
        raise NotImplementedError

    def reference(self, record: dict) -> str:
        """The output ``record`` should get (an exact match is not an error)."""
        return record["tgt"]

    def evaluate(self, records: Sequence[dict], *, beams: int | None = None) -> dict:
        """``{"n", "metrics", "errors"}`` of the outputs for ``records`` (``src`` ->
        ``tgt``); errors are the outputs not equal to their reference, lowest sentence
        score first."""
        hyps = self.generate([r["src"] for r in records], beams=beams)
        metrics, per = self.score(hyps, records)
        errors = [{**({"id": r["id"]} if "id" in r else {}), "src": r["src"],
                   "ref": self.reference(r), "hyp": h, "score": round(s, 2)}
                  for r, h, s in zip(records, hyps, per, strict=True)
                  if h.strip() != self.reference(r).strip()]
        errors.sort(key=lambda e: e["score"])
        return {"n": len(records), "metrics": metrics, "errors": errors}


class Translator(Seq2SeqPredictor):
    """Translation from ``langs[0]`` to ``langs[1]``."""

    translate = Seq2SeqPredictor.generate

    @property
    def src_lang(self) -> str:
        return self.langs[0]

    @property
    def tgt_lang(self) -> str:
        return self.langs[1]

    def score(self, hyps: list[str], records: Sequence[dict]) -> tuple[dict, list[float]]:
        from ..eval.translation import corpus_scores, sentence_scores

        refs = [r["tgt"] for r in records]
        per = sentence_scores(hyps, refs, target_lang=self.tgt_lang)
        return (corpus_scores(hyps, refs, target_lang=self.tgt_lang),
                [s["bleu"] for s in per])


class Summarizer(Seq2SeqPredictor):
    """Summaries of documents in ``langs``."""

    summarize = Seq2SeqPredictor.generate

    def score(self, hyps: list[str], records: Sequence[dict]) -> tuple[dict, list[float]]:
        from ..eval.summarization import pair_scores, rouge_scores

        by_lang: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_lang.setdefault(record_lang(r, self.langs), []).append(i)
        per = [0.0] * len(records)
        parts = {}
        for lang, idx in by_lang.items():
            h, ref = [hyps[i] for i in idx], [records[i]["tgt"] for i in idx]
            parts[lang] = rouge_scores(h, ref, lang=lang)
            for i, s in zip(idx, pair_scores(h, ref, lang=lang), strict=True):
                per[i] = s["rougeL"]["f1"]
        n = len(records)
        metrics = {k: sum(p[k] * p["n"] for p in parts.values()) / n
                   for k in ("rouge1", "rouge2", "rougeL")}
        metrics.update(n=n, by_lang=parts)
        return metrics, per


class Answerer(Seq2SeqPredictor):
    """Answers to ``question: Q context: P1 ... Pk`` inputs (:func:`lmforge.tasks.rag.rag_input`);
    ``""`` when the model says the passages hold none. ``retrieval`` is the recipe's
    (how many passages to give it), ``index_dir`` the run's collection; inputs are cut to
    ``max_source_tokens`` as in training."""

    def __init__(self, model: Any, tokenizer: Any, decode: DecodeConfig,
                 langs: Sequence[str], retrieval: Any = None, index_dir: Path | None = None,
                 max_source_tokens: int | None = None):
        super().__init__(model, tokenizer, decode, langs)
        self.retrieval, self.index_dir = retrieval, index_dir
        self.max_source_tokens = max_source_tokens

    def generate(self, texts: Sequence[str], **options: Any) -> list[str]:
        from .rag import NO_ANSWER

        return ["" if h.strip() == NO_ANSWER else h.strip()
                for h in super().generate(texts, **options)]

    def reference(self, record: dict) -> str:
        return record["answers"][0]["text"] if record["answers"] else ""

    def score(self, hyps: list[str], records: Sequence[dict]) -> tuple[dict, list[float]]:
        from ..eval.qa import qa_scores, question_scores

        preds = {r["id"]: h for r, h in zip(records, hyps, strict=True)}
        metrics = qa_scores(preds, records)
        per = [100.0 * question_scores(h, [a["text"] for a in r["answers"]],
                                       record_lang(r, self.langs))[1]
               for r, h in zip(records, hyps, strict=True)]
        types = sorted({r["type"] for r in records if r.get("type")})
        if types:
            metrics["by_type"] = {t: qa_scores({r["id"]: preds[r["id"]] for r in records
                                                if r.get("type") == t},
                                               [r for r in records if r.get("type") == t])
                                  for t in types}
        gold = [r["gold_in_passages"] for r in records if r.get("gold_in_passages") is not None]
        if gold:
            metrics["gold_in_passages"] = sum(gold) / len(gold)
        said = [(h, r) for h, r in zip(hyps, records, strict=True) if h]
        if said and all("context" in r for _, r in said):
            metrics["answer_in_passages"] = sum(" ".join(h.split()) in r["context"]
                                                for h, r in said) / len(said)
        return metrics, per


def record_lang(record: dict, langs: Sequence[str]) -> str:
    """A record's language: its ``lang``, else Chinese if it holds a CJK ideograph, else
    the first of ``langs`` that is not Chinese."""
    if record.get("lang"):
        return record["lang"]
    if any("\u4e00" <= ch <= "\u9fff" for ch in record["src"]):
        return "zh"
    return next((x for x in langs if x != "zh"), "en")


PREDICTORS = {"translate": Translator, "summarize": Summarizer, "answer": Answerer}


def run_dir_of(path: str | Path) -> Path | None:
    """The run folder of ``path`` (a run, or one of its checkpoints) if it has a recipe."""
    p = Path(path)
    for d in (p, p.parent.parent):
        if (d / "config.yaml").is_file():
            return d
    return None


def run_recipe(run_dir: Path) -> dict | None:
    """The mapping in ``run_dir/config.yaml`` (decrypted in memory when it is encrypted,
    with the active key: :func:`lmforge.privacy.encrypted_io.read_text`), or None when it
    is missing, unreadable or not a mapping. An encrypted file without a key raises
    :class:`~lmforge.errors.ConfigError`, a wrong key :class:`CheckpointError`."""
    import yaml

    from ..privacy.encrypted_io import read_text

    try:
        raw = yaml.safe_load(read_text(run_dir / "config.yaml"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def recipe_task(path: str | Path) -> str | None:
    """The ``task`` field of the recipe of a run (or one of its checkpoints), if any."""
    d = run_dir_of(path)
    raw = run_recipe(d) if d is not None else None
    task = raw.get("task") if raw is not None else None
    return task if isinstance(task, str) else None


def seq2seq_task_of(path: str | Path) -> str | None:
    """``translate``, ``summarize`` or ``answer`` for a generation run or one of its
    checkpoints."""
    task = recipe_task(path)
    return task if task in PREDICTORS else None


def load_seq2seq(run: str | Path, task: str | None = None,
                 key: KeySource | None = None) -> Seq2SeqPredictor:
    """A generation run's best checkpoint (or a checkpoint folder) as its predictor;
    ``task`` (``translate``, ``summarize``, ``answer``), when given, must be the run's.
    ``key`` (else the active one) opens a run encrypted at rest, its ``config.yaml``
    included, in memory (:func:`lmforge.hub.load_pretrained`)."""
    from ..privacy.encrypted_io import using_key

    with using_key(key):
        return _load_seq2seq(Path(run), task)


def _load_seq2seq(p: Path, task: str | None) -> Seq2SeqPredictor:
    from ..hub import load_pretrained
    from ..train.checkpoint import best_checkpoint, latest_checkpoint
    from .seq2seq_config import build_seq2seq_recipe

    run_dir = run_dir_of(p)
    found = seq2seq_task_of(p)
    want = {"translate": "translation", "summarize": "summarisation",
            "answer": "generative QA"}
    if run_dir is None or found is None or (task is not None and found != task):
        what = f"a {want[task]}" if task else "a translation, summarisation or generative QA"
        raise CheckpointError(f"{p}: not {what} run (no config.yaml with task: "
                              f"{task or 'translate/summarize/answer'} in it or two "
                              "folders above)")
    recipe = build_seq2seq_recipe(run_recipe(run_dir))
    folder = p if p != run_dir else best_checkpoint(run_dir) or latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    model, tokenizer = load_pretrained(folder, require_tokenizer=True)
    if not is_encoder_decoder(model):
        raise CheckpointError(f"{folder} holds a {type(model).__name__}, not an "
                              "encoder-decoder")
    return make_predictor(recipe, model, tokenizer, run_dir)


def make_predictor(recipe: Seq2SeqRecipe, model: Any, tokenizer: Any, run_dir: Path
                   ) -> Seq2SeqPredictor:
    """The predictor of ``recipe``'s task for ``model`` (a run in ``run_dir``)."""
    if recipe.task == "answer":
        from .rag import INDEX_DIR

        return Answerer(model, tokenizer, recipe.decode, recipe.data.langs,
                        recipe.retrieval, run_dir / INDEX_DIR, recipe.data.max_length)
    return PREDICTORS[recipe.task](model, tokenizer, recipe.decode, recipe.data.langs)
