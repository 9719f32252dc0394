"""The OpenAI API's request bodies, as pydantic models (they also make the OpenAPI schema).

Fields and ranges follow OpenAI's API reference (``response_format`` included: JSON
that follows a schema, :mod:`lmforge.generate.structured`); the extras (``top_k``,
``repetition_penalty``, ``min_tokens``, ``ignore_eos``, ``stop_token_ids``) are vLLM's.
Unknown fields are ignored, as OpenAI and vLLM do, so clients that send newer fields keep
working; a field that would change the output and is not supported (``best_of`` other
than ``n``, ``suffix`` for a model without fill-in-the-middle, ``tools`` for a chat template
that does not read them) is a 400 naming it, never silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import LmforgeError
from ..generate.structured import JSON_OBJECT, compile_schema
from .errors import ApiError

MAX_N = 16  # choices per request
MAX_LOGPROBS = 20


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    """The sampling parameters shared by completions and chat completions."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="A served model name (GET /v1/models).")
    temperature: float = Field(1.0, ge=0, le=2, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1, description="-1 or 0 = off (vLLM).")
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(1.0, ge=0.01, le=100,
                                      description="CTRL's penalty; 1 = off (vLLM).")
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    logit_bias: dict[str, float] | None = Field(
        None, description="OpenAI's: token id (as a string) -> bias in [-100, 100] added to "
        "its logit before sampling.")
    response_format: dict[str, Any] | None = Field(
        None, description="OpenAI's: {\"type\": \"text\"} (the default), {\"type\": "
        "\"json_object\"} (any JSON object) or {\"type\": \"json_schema\", \"json_schema\": "
        "{\"name\", \"schema\", \"strict\"}}: the output follows the schema "
        "(grammar-constrained decoding).")

    @model_validator(mode="after")
    def _check(self):
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if any(not s for s in stops):
            raise ApiError("stop strings must not be empty", param="stop")
        if self.stream_options is not None and not self.stream:
            raise ApiError("stream_options is only allowed when stream is true",
                           param="stream_options")
        for k, v in (self.logit_bias or {}).items():
            if not k.isdigit():
                raise ApiError(f"logit_bias keys are token ids, got {k!r}", param="logit_bias")
            if not -100 <= v <= 100:
                raise ApiError(f"logit_bias values must lie in [-100, 100], got {v} for "
                               f"token {k}", param="logit_bias")
        if self.json_schema is not None:
            if self.min_tokens:
                raise ApiError("min_tokens cannot be combined with a JSON response_format "
                               "(the grammar decides where the output ends)",
                               param="min_tokens")
            try:
                compile_schema(self.json_schema)
            except LmforgeError as e:
                raise ApiError(str(e), param="response_format") from None
        return self

    @property
    def json_schema(self) -> dict | None:
        """The schema the output must follow (``json_object``: any object), or None."""
        return _response_schema(self.response_format)

    @property
    def token_bias(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _response_schema(fmt: dict[str, Any] | None) -> dict | None:
    """The JSON schema of OpenAI's ``response_format``, None for text; a 400 naming
    ``response_format`` for an unknown type or a malformed ``json_schema``."""
    kind = "text" if fmt is None else fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT
    if kind != "json_schema":
        raise ApiError(f"response_format type must be text, json_object or json_schema, "
                       f"got {kind!r}", param="response_format")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise ApiError("response_format json_schema must be an object with name and schema",
                       param="response_format")
    name, schema, strict = spec.get("name"), spec.get("schema"), spec.get("strict")
    if not isinstance(name, str) or not name:
        raise ApiError("response_format json_schema needs a name (a string)",
                       param="response_format")
    if not isinstance(schema, dict):
        raise ApiError("response_format json_schema needs a schema (a JSON schema object)",
                       param="response_format")
    if strict is not None and not isinstance(strict, bool):
        raise ApiError("response_format json_schema strict must be true or false",
                       param="response_format")
    return schema


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, a list of strings, token ids, or a list of token-id lists.")
    max_tokens: int | None = Field(16, ge=0, description="0 with echo: score the prompt "
                                   "only (with logprobs), generating nothing")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    suffix: str | None = Field(None, description="The text after the completion: the "
                               "prompt becomes a fill-in-the-middle prompt (models trained "
                               "with FIM sentinels only).")
    best_of: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_completion(self):
        if self.suffix is not None and self.echo:
            raise ApiError("suffix cannot be combined with echo", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise ApiError("best_of must equal n (this server returns every sequence)",
                           param="best_of")
        if self.max_tokens == 0 and not self.echo:
            raise ApiError("max_tokens must be at least 1 (0 only with echo, to score "
                           "the prompt)", param="max_tokens")
        if self.max_tokens == 0 and self.stream:
            raise ApiError("max_tokens 0 (scoring the prompt) cannot stream; set stream "
                           "to false", param="max_tokens")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ApiError("prompt must not be an empty list", param="prompt")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a string or a list of token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return list(p)


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(
        description="The conversation: objects with role (system, developer, user, "
                    "assistant, tool) and content (a string or a list of text parts).")
    max_tokens: int | None = Field(None, ge=1, description="Deprecated by OpenAI in favour "
                                                           "of max_completion_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = Field(
        None, description="OpenAI's function tools, rendered by the chat template; calls "
                          "come back as tool_calls (lmforge.serve.tools).")
    tool_choice: Any = Field(None, description="none, auto, required or {\"type\": "
                             "\"function\", \"function\": {\"name\": ...}}")
    parallel_tool_calls: bool = Field(
        True, description="OpenAI's: may the reply hold several tool calls. Under "
        "tool_choice required, true allows one or more calls and false exactly one; a "
        "named function is always one call; under auto, false returns only the first "
        "call the model writes.")

    @model_validator(mode="after")
    def _check_chat(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError("top_logprobs needs logprobs to be true", param="top_logprobs")
        return self

    @property
    def length(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _check(self):
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts:
            raise ApiError("input must not be empty", param="input")
        if not all(isinstance(t, str) for t in texts):
            raise ApiError("input must be a string or a list of strings (token ids are not "
                           "accepted by this server)", param="input")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class TokenizeRequest(BaseModel):
    """``POST /tokenize``: a prompt, or chat ``messages`` rendered by the template."""

    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _check(self):
        if (self.prompt is None) == (self.messages is None):
            raise ApiError("give exactly one of prompt and messages", param="prompt")
        return self


class DetokenizeRequest(BaseModel):
    """``POST /detokenize``."""

    model_config = ConfigDict(extra="ignore")

    model: str
    tokens: list[int]
