"""The task routes' request and response bodies (:mod:`lmforge.serve.task_routes`), as
pydantic models: they check the JSON (a 400 naming the field, in OpenAI's envelope) and
document it in the OpenAPI schema.

Every request names a ``model`` and gives ``input``: one item or a list of at most
:data:`MAX_INPUTS`; every response is ``{"object": "list", "model", "data"}`` with one
result per item, ``index`` its place in the list. Offsets are characters, end exclusive,
so ``text[start:end]`` is the span. Unknown fields are ignored, as in the OpenAI routes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ApiError, validation_error

MAX_INPUTS = 256  # items per request
_LIST = f" A list holds 1 to {MAX_INPUTS} items."


# ----------------------------------------------------------------------------- requests

def _where(many: bool, i: int) -> str:
    """The ``param`` of item ``i``: ``input[i]`` in a list, else ``input``."""
    return f"input[{i}]" if many else "input"


class TaskRequest(BaseModel):
    """What every task request has: the model, and ``input``, one item or a list of them.
    Each route's request declares ``input``'s type for the schema, and which items it
    takes: texts (``takes_texts``), objects of ``item_model``, described by ``shape``."""

    model_config = ConfigDict(extra="ignore")

    takes_texts: ClassVar[bool] = True
    item_model: ClassVar[type[BaseModel] | None] = None
    shape: ClassVar[str] = "a text"

    model: str = Field(description="A served task model (GET /v1/models: its kind is the "
                                   "route it serves).")
    input: Any

    @property
    def items(self) -> list:
        """The input as a list (a single item is a list of one)."""
        return list(self.input) if isinstance(self.input, list) else [self.input]

    def where(self, i: int) -> str:
        """The ``param`` of item ``i``."""
        return _where(isinstance(self.input, list), i)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        """``input``'s size and each item's shape, checked first so that an error names
        the item and its field (the union of an item and a list of them would report the
        first branch that failed)."""
        if not isinstance(data, dict) or "input" not in data:
            return data  # pydantic says what is missing
        value = data["input"]
        many = isinstance(value, list)
        items = value if many else [value]
        if not items:
            raise ApiError("input must not be empty", param="input")
        if len(items) > MAX_INPUTS:
            raise ApiError(f"input holds {len(items)} items; at most {MAX_INPUTS} per "
                           "request", param="input")
        for i, item in enumerate(items):
            if isinstance(item, str) and cls.takes_texts:
                continue
            if isinstance(item, dict) and cls.item_model is not None:
                try:
                    cls.item_model.model_validate(item)
                except ValidationError as e:
                    loc = ("input", i) if many else ("input",)
                    raise validation_error(RequestValidationError(
                        [{**err, "loc": (*loc, *err["loc"])} for err in e.errors()])) from None
                continue
            raise ApiError(f"{_where(many, i)} must be {cls.shape}", param=_where(many, i))
        return data


def _check_text(text: str, param: str) -> None:
    if not text.strip():
        raise ApiError(f"{param} is empty", param=param)


class TextsRequest(TaskRequest):
    """A request whose items are texts."""

    input: str | list[str] = Field(description="A text or a list of texts." + _LIST)

    @model_validator(mode="after")
    def _texts(self):
        for i, text in enumerate(self.items):
            _check_text(text, self.where(i))
        return self


class NerRequest(TextsRequest):
    """``POST /v1/ner``."""


class TextPair(BaseModel):
    """Two texts read together by a sentence-pair classifier."""

    model_config = ConfigDict(extra="ignore")

    text_a: str
    text_b: str


class ClassifyRequest(TaskRequest):
    """``POST /v1/classify``."""

    item_model = TextPair
    shape = "a text or an object {text_a, text_b}"

    input: str | TextPair | list[str | TextPair] = Field(
        description="A text, a pair {text_a, text_b} (sentence-pair models), or a list of "
                    "either (not both: a pair model reads a batch as pairs)." + _LIST)
    top_k: int | None = Field(None, ge=1, description="Keep the k most probable labels in "
                                                      "probabilities (default: all).")

    @model_validator(mode="after")
    def _texts(self):
        items = self.items
        for i, x in enumerate(items):
            if isinstance(x, str):
                _check_text(x, self.where(i))
            else:
                _check_text(x.text_a, f"{self.where(i)}.text_a")
                _check_text(x.text_b, f"{self.where(i)}.text_b")
        if len({isinstance(x, str) for x in items}) > 1:
            raise ApiError("input mixes texts and text pairs; send them in separate requests",
                           param="input")
        return self


class Span(BaseModel):
    """An entity of a relation: characters ``[start, end)`` of the text."""

    model_config = ConfigDict(extra="ignore")

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    type: str | None = Field(None, description="The entity type (person, city, ...), for "
                                               "models trained with typed markers.")


class RelationInput(BaseModel):
    """A text and the two entities whose relation is asked, head to tail."""

    text: str
    head: Span
    tail: Span


class RelationsRequest(TaskRequest):
    """``POST /v1/relations``."""

    takes_texts, item_model = False, RelationInput
    shape = "an object {text, head, tail}"

    input: RelationInput | list[RelationInput] = Field(
        description="A text with its head and tail entities, or a list of them." + _LIST)

    @model_validator(mode="after")
    def _spans(self):
        for i, x in enumerate(self.items):
            _check_text(x.text, f"{self.where(i)}.text")
            for role, span in (("head", x.head), ("tail", x.tail)):
                param = f"{self.where(i)}.{role}"
                if not span.start < span.end <= len(x.text):
                    raise ApiError(f"{param}: start and end must satisfy 0 <= start < end <= "
                                   f"{len(x.text)} (the text's length)", param=param)
                _check_text(x.text[span.start:span.end], param)
            if x.head.start < x.tail.end and x.tail.start < x.head.end:
                raise ApiError(f"{self.where(i)}: the head and the tail overlap",
                               param=f"{self.where(i)}.tail")
        return self


class Question(BaseModel):
    """A question, with the text to answer it from."""

    question: str
    context: str | None = Field(None, description="The text that holds the answer: needed "
                                "by extractive models; a generative model without it reads "
                                "the passages its run's index retrieves.")


class QARequest(TaskRequest):
    """``POST /v1/qa``."""

    takes_texts, item_model = False, Question
    shape = "an object {question, context}"

    input: Question | list[Question] = Field(description="A question or a list of them."
                                                         + _LIST)

    @model_validator(mode="after")
    def _questions(self):
        for i, x in enumerate(self.items):
            _check_text(x.question, f"{self.where(i)}.question")
            if x.context is not None:
                _check_text(x.context, f"{self.where(i)}.context")
        return self


class GenerateRequest(TextsRequest):
    """``POST /v1/translate`` and ``POST /v1/summarize``: texts and the decoding options."""

    beams: int | None = Field(None, ge=1, le=16, description="Beam size (1: greedy); "
                              "default: the run's decode.beams (4 unless its recipe says "
                              "otherwise).")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens written per output; "
                                   "default: the run's decode.max_new_tokens.")


# ---------------------------------------------------------------------------- responses

class TaskResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str


class Indexed(BaseModel):
    index: int = Field(description="The item's place in input.")


class Classification(Indexed):
    label: str
    score: float = Field(description="The label's probability.")
    probabilities: dict[str, float] = Field(description="Label -> probability, most "
                                                        "probable first (top_k of them).")


class ClassifyResponse(TaskResponse):
    data: list[Classification]


class Entity(BaseModel):
    type: str
    text: str
    start: int
    end: int


class Entities(Indexed):
    text: str
    entities: list[Entity]


class NerResponse(TaskResponse):
    data: list[Entities]


class Relation(Indexed):
    relation: str
    score: float = Field(description="The relation's probability.")
    probabilities: dict[str, float] = Field(description="Relation -> probability, most "
                                                        "probable first.")


class RelationsResponse(TaskResponse):
    data: list[Relation]


class Answer(Indexed):
    answer: str = Field(description='"" when the model finds no answer.')
    score: float | None = Field(description="Extractive models: the answer's probability "
                                            "among the candidates.")
    start: int | None = Field(description="Extractive models: the answer's characters "
                                          "[start, end) in the context.")
    end: int | None


class QAResponse(TaskResponse):
    data: list[Answer]


class Translation(Indexed):
    translation: str


class TranslateResponse(TaskResponse):
    data: list[Translation]


class Summary(Indexed):
    summary: str


class SummarizeResponse(TaskResponse):
    data: list[Summary]
