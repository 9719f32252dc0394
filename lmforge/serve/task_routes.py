"""The task routes: ``/v1/classify``, ``/v1/ner``, ``/v1/relations``, ``/v1/qa``,
``/v1/translate`` and ``/v1/summarize``, each answered by a served task run
(:mod:`lmforge.serve.task_models`) with exactly what its predictor gives, the outputs of
``lmforge predict``, ``lmforge translate`` and ``lmforge summarize``. The JSON shapes are
in :mod:`lmforge.serve.task_protocol`.

A request's items are predicted as one batch on a worker thread, so the event loop keeps
serving, and one request at a time per model (a lock per served model): the predictors
are not made for concurrent calls, and a batch already uses every core. A generative QA
question without a context is read with the passages the run's own index retrieves for
it, as in training, from the index the served model keeps open
(:class:`lmforge.serve.task_models.RunIndex`: opened once, reopened when its files
change).

Errors come in OpenAI's envelope: a 400 naming the field, a 400 naming ``model`` when the
model serves another route, a 404 for an unknown model. Usage (the access log, the audit,
token budgets) counts the inputs' tokens by the model's tokenizer (0 for a scikit-learn
baseline, which has none) and, for written outputs, theirs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Request

from ..errors import LmforgeError
from .errors import ApiError
from .models import ServedModel
from .routes import report_usage
from .task_protocol import (
    ClassifyRequest,
    ClassifyResponse,
    GenerateRequest,
    NerRequest,
    NerResponse,
    QARequest,
    QAResponse,
    RelationsRequest,
    RelationsResponse,
    Span,
    SummarizeResponse,
    TranslateResponse,
)

if TYPE_CHECKING:
    from ..privacy.keys import KeySource
    from .task_models import ReaderModel

router = APIRouter(tags=["tasks"])

T = TypeVar("T")
#: what a prediction gives back: the results, the input tokens and the output tokens
Work = Callable[[], tuple[T, int, int]]


def route_of(served: ServedModel) -> str:
    """The route ``served`` answers: ``/v1/completions`` for a language model (and chat),
    ``/v1/embeddings`` for an encoder, ``/v1/<task>`` for a task model."""
    return {"generate": "/v1/completions",
            "embedding": "/v1/embeddings"}.get(served.kind, f"/v1/{served.kind}")


def _task_model(request: Request, name: str, task: str) -> ServedModel:
    """The served model ``name`` (404 if unknown), which must serve ``task``."""
    served = request.app.state.server.model(name)
    if served.task != task:
        raise ApiError(f"model {name} serves {route_of(served)}, not /v1/{task}",
                       param="model")
    return served


def _lock(request: Request, served: ServedModel) -> threading.Lock:
    """The lock of ``served`` (its name and version), made on first use; called on the
    event loop, so two requests cannot make two."""
    state = request.app.state
    if not hasattr(state, "task_locks"):
        state.task_locks = {}
    return state.task_locks.setdefault((served.name, served.version), threading.Lock())


def _tokens(tokenizer: Any, texts: Sequence[str]) -> int:
    """The tokens of ``texts`` by ``tokenizer`` (0 without one)."""
    return 0 if tokenizer is None else sum(len(tokenizer.encode(t)) for t in texts)


async def _run(request: Request, served: ServedModel, work: Work[T]) -> T:
    """``work()`` on a worker thread under the model's lock; reports its usage and returns
    its results. The predictor's own errors (a text it cannot read) are 400s."""
    lock = _lock(request, served)

    def locked() -> tuple[T, int, int]:
        with lock:
            return work()

    try:
        results, prompt_tokens, completion_tokens = await asyncio.to_thread(locked)
    except LmforgeError as e:
        raise ApiError(str(e), param="input") from None
    report_usage(request, served, prompt_tokens, completion_tokens)
    return results


def _predicted(served: ServedModel, inputs: list, texts: Sequence[str]) -> Work[list[dict]]:
    """The work of a classifier, tagger or extractive reader: ``predict(inputs)``, whose
    texts are ``texts``."""
    return lambda: (served.predictor.predict(inputs), _tokens(served.tokenizer, texts), 0)


def _written(served: ServedModel, sources: Callable[[], list[str]],
             **options: Any) -> Work[list[str]]:
    """The work of an encoder-decoder: ``generate`` of the texts ``sources()`` makes, with
    the decoding ``options`` (None: the run's)."""
    def work() -> tuple[list[str], int, int]:
        texts = sources()
        outputs = served.predictor.generate(texts, **options)
        return outputs, _tokens(served.tokenizer, texts), _tokens(served.tokenizer, outputs)

    return work


def _listed(served: ServedModel, data: list[dict]) -> dict:
    return {"object": "list", "model": served.name, "data": data}


def _ranked(probs: dict[str, float], top_k: int | None = None) -> dict[str, float]:
    """``probs`` most probable first (ties in the model's label order), the ``top_k``
    first when given."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    return dict(ranked[:top_k])


# ----------------------------------------------------------------------------- routes

@router.post("/v1/classify", response_model=ClassifyResponse,
             summary="Label texts or text pairs (a fine-tuned classifier)")
async def classify(body: ClassifyRequest, request: Request):
    served = _task_model(request, body.model, "classify")
    pairs = [(x, None) if isinstance(x, str) else (x.text_a, x.text_b) for x in body.items]
    inputs = [a if b is None else {"text": a, "text_b": b} for a, b in pairs]
    texts = [t for pair in pairs for t in pair if t is not None]
    preds = await _run(request, served, _predicted(served, inputs, texts))
    return _listed(served, [{"index": i, "label": p["label"], "score": p["probs"][p["label"]],
                             "probabilities": _ranked(p["probs"], body.top_k)}
                            for i, p in enumerate(preds)])


@router.post("/v1/ner", response_model=NerResponse,
             summary="Find the entities of texts (a fine-tuned tagger)")
async def ner(body: NerRequest, request: Request):
    served = _task_model(request, body.model, "ner")
    texts = body.items
    preds = await _run(request, served, _predicted(served, texts, texts))
    return _listed(served, [{"index": i, "text": t, "entities": [
        {"type": e["label"], "text": e["text"], "start": e["start"], "end": e["end"]}
        for e in p["entities"]]} for i, (t, p) in enumerate(zip(texts, preds, strict=True))])


def _entity(text: str, span: Span) -> dict:
    """A span as the relation predictor's entity: ``{"name", "pos", "type"?}``."""
    entity: dict[str, Any] = {"name": text[span.start:span.end], "pos": [span.start, span.end]}
    if span.type is not None:
        entity["type"] = span.type
    return entity


@router.post("/v1/relations", response_model=RelationsResponse,
             summary="The relation of a head and a tail entity (a fine-tuned classifier)")
async def relations(body: RelationsRequest, request: Request):
    served = _task_model(request, body.model, "relations")
    records = [{"text": x.text, "h": _entity(x.text, x.head), "t": _entity(x.text, x.tail)}
               for x in body.items]
    preds = await _run(request, served,
                       _predicted(served, records, [x.text for x in body.items]))
    return _listed(served, [{"index": i, "relation": p["relation"],
                             "score": p["probs"][p["relation"]],
                             "probabilities": _ranked(p["probs"])}
                            for i, p in enumerate(preds)])


def _rag_sources(served: ReaderModel, body: QARequest, key: KeySource | None
                 ) -> Callable[[], list[str]]:
    """A generative reader's inputs (:func:`lmforge.retrieval.ask.rag_input`): each question
    with its context, else with the passages the run's index retrieves for it
    (:meth:`lmforge.serve.task_models.RunIndex.retrieve`, as in training; an encrypted
    index is opened in memory with the server's ``key``); a 400 when the run has no
    index."""
    from ..retrieval.ask import rag_input

    pred, questions = served.predictor, body.items
    asked = [i for i, q in enumerate(questions) if q.context is None]
    if asked and not (pred.index_dir / "docs.sqlite").is_file():
        raise ApiError(f"model {served.name} has no index of passages to retrieve from; "
                       "give each question a context", param=f"{body.where(asked[0])}.context")

    def sources() -> list[str]:
        out = [rag_input(q.question, [q.context]) if q.context is not None else ""
               for q in questions]
        if asked:
            found = served.passages.retrieve([{"id": str(i), "question": questions[i].question,
                                               "answers": []} for i in asked], key)
            for i, r in zip(asked, found, strict=True):
                out[i] = r["src"]
        return out

    return sources


@router.post("/v1/qa", response_model=QAResponse,
             summary="Answer questions (a fine-tuned extractive or generative reader)")
async def qa(body: QARequest, request: Request):
    from ..tasks.seq2seq_predictor import Answerer

    served = _task_model(request, body.model, "qa")
    questions = body.items
    if isinstance(served.predictor, Answerer):
        answers = await _run(request, served, _written(served, _rag_sources(
            served, body, request.app.state.server.key)))
        return _listed(served, [{"index": i, "answer": a, "score": None, "start": None,
                                 "end": None} for i, a in enumerate(answers)])
    missing = next((i for i, q in enumerate(questions) if q.context is None), None)
    if missing is not None:
        param = f"{body.where(missing)}.context"
        raise ApiError(f"{param} is required: model {served.name} finds the answer in a "
                       "context", param=param)
    records = [{"question": q.question, "context": q.context} for q in questions]
    texts = [t for q in questions for t in (q.question, q.context)]
    preds = await _run(request, served, _predicted(served, records, texts))
    return _listed(served, [{"index": i, **p} for i, p in enumerate(preds)])


async def _generate(request: Request, body: GenerateRequest, task: str, key: str) -> dict:
    """``/v1/translate`` and ``/v1/summarize``: each text's output under ``key``."""
    served = _task_model(request, body.model, task)
    texts = body.items
    outputs = await _run(request, served, _written(served, lambda: texts, beams=body.beams,
                                                   max_new_tokens=body.max_tokens))
    return _listed(served, [{"index": i, key: o} for i, o in enumerate(outputs)])


@router.post("/v1/translate", response_model=TranslateResponse,
             summary="Translate texts (a trained encoder-decoder)")
async def translate(body: GenerateRequest, request: Request):
    return await _generate(request, body, "translate", "translation")


@router.post("/v1/summarize", response_model=SummarizeResponse,
             summary="Summarise documents (a trained encoder-decoder)")
async def summarize(body: GenerateRequest, request: Request):
    return await _generate(request, body, "summarize", "summary")
