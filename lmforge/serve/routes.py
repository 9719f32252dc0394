"""The OpenAI-compatible routes: models, completions, chat completions, embeddings, and
vLLM's ``/tokenize`` and ``/detokenize``.

Response shapes are OpenAI's. ``n`` choices of ``P`` prompts are ``P * n`` sequences,
choice ``i * n + j`` being prompt ``i``'s ``j``-th; with a ``seed`` choice ``j`` uses
``seed + j``, so choice 0 is what ``lmforge generate --seed SEED`` gives. Finish reasons
are ``stop`` (end of sequence or a stop string) and ``length``. ``usage`` counts each
prompt once and every generated token, a final end-of-sequence token included;
``prompt_tokens_details.cached_tokens`` the prompt tokens found in the prefix cache.

Streaming is server-sent events: one ``data: {chunk}`` per piece of text (whole
characters, never a part of a stop string), the last chunk of each choice carrying its
``finish_reason``, then with ``stream_options.include_usage`` a chunk with empty
``choices`` and the usage, then ``data: [DONE]``. An error after the stream started is
sent as ``data: {"error": {...}}`` before ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..code.fim import FIM_TOKENS, FimIds, fim_prompt
from ..errors import LmforgeError
from ..generate.config import GenerationConfig
from ..generate.text import encode_prompt
from .engine import Event, TokenLogprob
from .errors import ApiError
from .jobs import Job
from .protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    SamplingFields,
    TokenizeRequest,
)
from .response_cache import cache_key, is_deterministic
from .tools import ToolUse, check_tools, parse_reply, template_reads_tools

router = APIRouter()

# a request with "stream": true is answered with server-sent events
_STREAMABLE = {200: {"content": {"application/json": {}, "text/event-stream": {}},
                     "description": "The completion, or its stream (stream: true)"}}

_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def _server(request: Request) -> Any:
    return request.app.state.server


def _sampling(body: SamplingFields, max_tokens: int, choice: int,
              json_schema: dict | None) -> GenerationConfig:
    """Choice ``choice``'s generation rules; ``json_schema`` is what the output follows
    (the ``response_format``'s, or a required tool call's)."""
    try:
        return GenerationConfig(
            max_new_tokens=max_tokens, temperature=body.temperature,
            top_k=body.top_k if body.top_k > 0 else None,
            top_p=body.top_p if body.top_p < 1 else None,
            repetition_penalty=body.repetition_penalty,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            stop=body.stops, seed=None if body.seed is None else body.seed + choice,
            min_new_tokens=min(body.min_tokens, max_tokens), logit_bias=body.token_bias,
            json_schema=json_schema)
    except LmforgeError as e:
        raise ApiError(str(e)) from None


def _stop_ids(body: SamplingFields, eos: int | None, vocab: int) -> frozenset[int]:
    """The ids that end a sequence; both they and the ``logit_bias`` ids must lie in the
    vocabulary, and a JSON ``response_format`` needs at least one (400 otherwise)."""
    if any(not 0 <= i < vocab for i in body.token_bias):
        raise ApiError(f"logit_bias token ids must lie in [0, {vocab})", param="logit_bias")
    ids = set(body.stop_token_ids or [])
    if any(not 0 <= i < vocab for i in ids):
        raise ApiError(f"stop_token_ids must lie in [0, {vocab})", param="stop_token_ids")
    if eos is not None and not body.ignore_eos:
        ids.add(eos)
    if body.json_schema is not None and not ids:
        raise ApiError("a JSON response_format needs a token that ends the output: do not "
                       "set ignore_eos, or give stop_token_ids", param="response_format")
    return frozenset(ids)


def _check_length(served: Any, prompt: list[int], max_tokens: int, param: str) -> None:
    ctx = served.max_seq_len
    if not prompt:
        raise ApiError("the prompt has no tokens", param="prompt")
    if len(prompt) + max_tokens > ctx:
        raise ApiError(f"this model's maximum context length is {ctx} tokens; the request "
                       f"asks for {len(prompt) + max_tokens} ({len(prompt)} in the prompt, "
                       f"{max_tokens} to generate). Lower {param} or shorten the prompt.",
                       param=param)


def _usage(prompts: list[list[int]], finals: dict[int, Event]) -> dict:
    p = sum(len(x) for x in prompts)
    c = sum(e.completion_tokens for e in finals.values())
    cached = sum(e.cached_tokens for e in finals.values())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": cached}}


def report_usage(request: Request, served: Any, prompt_tokens: int,
                 completion_tokens: int, content: dict[str, list[str]] | None = None) -> None:
    """What the request used, for the access log, the audit and the token budget, and
    the prompt and output texts for a server that logs them redacted
    (:mod:`lmforge.serve.access`)."""
    request.state.usage = {"model": served.name, "version": served.version,
                           "prompt_tokens": prompt_tokens,
                           "completion_tokens": completion_tokens}
    if content is not None:
        request.state.content = content


def _token_text(tokenizer: Any, token: int) -> str:
    return tokenizer.decode([token], skip_special_tokens=False)


def _completion_logprobs(tokenizer: Any, items: list[TokenLogprob], offset: int,
                         echoed: list[TokenLogprob] | None = None) -> dict:
    """OpenAI's completion ``logprobs`` object of ``items`` (text offsets from
    ``offset``), after the ``echoed`` prompt's tokens (offsets from 0; the first has
    ``null`` log-probabilities, as OpenAI's). Special tokens (a prompt's ``bos``) are
    listed but take no width in the text."""
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                            "text_offset": []}
    for part, pos in ((echoed or [], 0), (items, offset)):
        for t in part:
            text = _token_text(tokenizer, t.token)
            out["tokens"].append(text)
            out["token_logprobs"].append(t.logprob)
            out["top_logprobs"].append(None if t.logprob is None else
                                       {_token_text(tokenizer, i): lp for i, lp in t.top})
            out["text_offset"].append(pos)
            pos += len(tokenizer.decode([t.token], skip_special_tokens=True))
    return out


def _chat_logprobs(tokenizer: Any, items: list[TokenLogprob]) -> dict:
    def entry(token: int, logprob: float) -> dict:
        s = _token_text(tokenizer, token)
        return {"token": s, "logprob": logprob, "bytes": list(s.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob),
                         "top_logprobs": [entry(i, lp) for i, lp in t.top]} for t in items]}


@dataclass
class Echo:
    """A completion prompt returned before its completion (``echo``), with its tokens'
    log-probabilities when ``logprobs`` is asked for."""

    text: str
    logprobs: list[TokenLogprob] | None = None


def _finish_error(event: Event) -> ApiError | None:
    if event.finish_reason == "timeout":
        return ApiError("the request timed out", 408, code="timeout")
    if event.finish_reason == "error":
        return ApiError(event.error or "internal error", 500, type="server_error")
    return None


def _new_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


async def _answer(request: Request, kind: str, served: Any, body: SamplingFields,
                  start: Any, echo: list[Echo] | None = None):
    """A stream, or the whole response: from the response cache when the request is
    deterministic and the cache has it (:mod:`lmforge.serve.response_cache`), else
    generated by ``start()`` (a :class:`_Generation`) and stored."""
    server = _server(request)
    cache, key = server.response_cache, None
    if cache is not None and is_deterministic(body):
        key = cache_key(kind, served.name, served.version, body,
                        getattr(request.state, "key_id", None))
        hit = cache.get(key)
        if hit is not None:
            server.metrics.response_cache_hits.labels(served.name, served.version).inc()
            usage = hit["usage"]
            report_usage(request, served, usage["prompt_tokens"], usage["completion_tokens"])
            hit = {**hit, "id": _new_id(kind), "created": int(time.time())}
            if body.stream:
                return StreamingResponse(_replay(hit, kind, body.include_usage),
                                         media_type="text/event-stream",
                                         headers={**_STREAM_HEADERS, "X-Cache": "hit"})
            return JSONResponse(hit, headers={"X-Cache": "hit"})
    gen = start()
    if body.stream:
        return gen.stream(echo, key)
    out = await gen.gather(echo)
    if out is None:  # the client went away; nobody reads this
        return JSONResponse({}, status_code=499)
    if key is not None:
        cache.put(key, out)
    return JSONResponse(out)


# Characters that line-splitting clients (Python's str.splitlines, httpx's aiter_lines)
# take for line ends, though SSE and JSON do not: escaped, so one event stays one line.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                              "\u2029": "\\u2029"})


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False).translate(_LINE_BREAKS)}\n\n"


_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _replay(response: dict, kind: str, include_usage: bool) -> AsyncIterator[str]:
    """A cached whole response as a stream: per choice, its whole text (and logprobs and
    tool calls) in one chunk with its finish reason; then the usage chunk when asked."""
    chat = kind == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"
    head = {k: response[k] for k in ("id", "created", "model")}
    extra = {"usage": None} if include_usage else {}
    for c in response["choices"]:
        if chat:
            delta = {"role": "assistant", **{k: v for k, v in c["message"].items()
                                             if k != "role" and v is not None}}
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": k, **t}
                                       for k, t in enumerate(delta["tool_calls"])]
            choice = {"index": c["index"], "delta": delta, "logprobs": c["logprobs"],
                      "finish_reason": c["finish_reason"]}
        else:
            choice = c
        yield _sse({**head, "object": obj, "choices": [choice], **extra})
    if include_usage:
        yield _sse({**head, "object": obj, "choices": [], "usage": response["usage"]})
    yield "data: [DONE]\n\n"


class _Generation:
    """The shared flow of completions and chat completions: submit ``P * n`` sequences,
    then gather or stream their events."""

    def __init__(self, request: Request, body: SamplingFields, served: Any,
                 prompts: list[list[int]], max_tokens: list[int], stop_ids: frozenset[int],
                 logprobs: int | None, kind: str, tools: ToolUse | None = None):
        server = _server(request)
        self.request, self.body, self.served, self.prompts = request, body, served, prompts
        self.tools = tools
        schema = tools.schema if tools is not None and tools.schema is not None else body.json_schema
        self.kind, self.tokenizer = kind, served.tokenizer
        self.id = _new_id(kind)
        self.created = int(time.time())
        self.job = Job(served, server.metrics, server.request_timeout)
        for i, prompt in enumerate(prompts):
            for j in range(body.n):
                self.job.submit(prompt, _sampling(body, max_tokens[i], j, schema),
                                stop_ids, logprobs)
        server.metrics.prompt_tokens.labels(served.name, served.version).inc(
            sum(len(p) for p in prompts))
        report_usage(request, served, sum(len(p) for p in prompts), 0)

    def _envelope(self, choices: list[dict], obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created,
                "model": self.served.name, "choices": choices}

    async def gather(self, echo: list[Echo] | None = None) -> dict | None:
        """The whole response body, or None when the client went away."""
        n = len(self.job.requests)
        texts = [""] * n
        items: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finals: dict[int, Event] = {}
        async for i, ev in self.job.events(self.request):
            texts[i] += ev.text
            items[i].extend(ev.logprobs)
            if ev.finish_reason is not None:
                error = _finish_error(ev)
                if error is not None:
                    self.job.cancel()
                    raise error
                finals[i] = ev
        if len(finals) < n:  # the client went away; nobody reads this
            return None
        response = self._response(texts, items, finals, echo)
        usage = response["usage"]
        report_usage(self.request, self.served, usage["prompt_tokens"],
                     usage["completion_tokens"], self._content(texts))
        return response

    def _response(self, texts: list[str], items: list[list[TokenLogprob]],
                  finals: dict[int, Event], echo: list[Echo] | None) -> dict:
        """The whole response body of finished choices (also what a stream stores in the
        response cache)."""
        choices = []
        for i in range(len(texts)):
            reason = _FINISH.get(finals[i].finish_reason, finals[i].finish_reason)
            if self.kind == "chat":
                lp = _chat_logprobs(self.tokenizer, items[i]) if self.body.logprobs else None
                message, reason = self._message(texts[i], reason)
                choices.append({"index": i, "message": message, "logprobs": lp,
                                "finish_reason": reason})
            else:
                prefix = echo[i // self.body.n] if echo else Echo("")
                lp = (_completion_logprobs(self.tokenizer, items[i], len(prefix.text),
                                           prefix.logprobs)
                      if self.body.logprobs is not None else None)
                choices.append({"index": i, "text": prefix.text + texts[i], "logprobs": lp,
                                "finish_reason": reason})
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        return {**self._envelope(choices, obj), "usage": _usage(self.prompts, finals)}

    def _message(self, text: str, reason: str) -> tuple[dict, str]:
        """The assistant message of a reply and its finish reason: with tools, the calls
        parsed out of it (:mod:`lmforge.serve.tools`)."""
        if self.tools is None:
            return {"role": "assistant", "content": text}, reason
        content, calls = parse_reply(self.tools.prefill + text, self.tools)
        if not calls:
            return {"role": "assistant", "content": content}, reason
        return ({"role": "assistant", "content": content, "tool_calls": calls},
                "tool_calls")

    def stream(self, echo: list[Echo] | None = None, cache_key: str | None = None
               ) -> StreamingResponse:
        """The SSE stream; with ``cache_key`` the whole response is stored in the response
        cache once every choice has finished."""
        return StreamingResponse(self._chunks(echo, cache_key), media_type="text/event-stream",
                                 headers=_STREAM_HEADERS)

    async def _chunks(self, echo: list[Echo] | None, cache_key: str | None
                      ) -> AsyncIterator[str]:
        chat, usage = self.kind == "chat", self.body.include_usage
        obj = "chat.completion.chunk" if chat else "text_completion"
        finals: dict[int, Event] = {}
        extra = {"usage": None} if usage else {}
        n = len(self.job.requests)
        texts = [""] * n
        items: list[list[TokenLogprob]] = [[] for _ in range(n)]
        try:
            for i in range(n):  # the role (chat) or the echoed prompt first
                if chat:
                    delta = {"role": "assistant", "content": ""}
                    yield _sse({**self._envelope([{"index": i, "delta": delta,
                                                   "logprobs": None, "finish_reason": None}],
                                                 obj), **extra})
                elif echo:
                    prefix = echo[i // self.body.n]
                    lp = (_completion_logprobs(self.tokenizer, [], 0, prefix.logprobs)
                          if prefix.logprobs is not None else None)
                    yield _sse({**self._envelope([{"index": i, "text": prefix.text,
                                                   "logprobs": lp, "finish_reason": None}],
                                                 obj), **extra})
            async for i, ev in self.job.events(self.request):
                if ev.finish_reason is not None:
                    error = _finish_error(ev)
                    if error is not None:
                        self.job.cancel()
                        yield _sse(error.body())
                        break
                    finals[i] = ev
                texts[i] += ev.text
                items[i].extend(ev.logprobs)
                if not (ev.text or ev.finish_reason or ev.logprobs):
                    continue
                reason = _FINISH.get(ev.finish_reason or "", None)
                if self.tools is not None:  # sent whole at the end (module tools)
                    if reason is not None:
                        yield _sse({**self._envelope([self._tool_delta(i, texts[i], reason)],
                                                     obj), **extra})
                    continue
                yield _sse({**self._envelope([self._choice(i, ev, reason)], obj), **extra})
            else:
                if usage and len(finals) == n:
                    yield _sse({**self._envelope([], obj),
                                "usage": _usage(self.prompts, finals)})
                cache = _server(self.request).response_cache
                if cache_key is not None and cache is not None and len(finals) == n:
                    cache.put(cache_key, self._response(texts, items, finals, echo))
            yield "data: [DONE]\n\n"
        finally:
            self.job.cancel()
            report_usage(self.request, self.served, sum(len(p) for p in self.prompts),
                         sum(e.completion_tokens for e in finals.values()),
                         self._content(texts))

    def _content(self, outputs: list[str]) -> dict[str, list[str]] | None:
        """The prompts (decoded, without special tokens) and the outputs, when the
        server logs content (redacted); else None, and nothing is decoded."""
        if _server(self.request).access.redact is None:
            return None
        return {"prompts": [self.tokenizer.decode(p, skip_special_tokens=True)
                            for p in self.prompts], "outputs": outputs}

    def _tool_delta(self, i: int, text: str, reason: str) -> dict:
        """A reply with tools, whole, as one streamed choice: its content and its calls
        (each with its ``index``, as OpenAI's tool-call deltas)."""
        message, reason = self._message(text, reason)
        delta = {k: v for k, v in message.items() if k == "content" and v is not None}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": k, **c}
                                   for k, c in enumerate(message["tool_calls"])]
        return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _choice(self, i: int, ev: Event, reason: str | None) -> dict:
        if self.kind == "chat":
            lp = _chat_logprobs(self.tokenizer, ev.logprobs) if self.body.logprobs else None
            delta = {"content": ev.text} if ev.text else {}
            return {"index": i, "delta": delta, "logprobs": lp, "finish_reason": reason}
        lp = (_completion_logprobs(self.tokenizer, ev.logprobs, 0)
              if self.body.logprobs is not None else None)
        return {"index": i, "text": ev.text, "logprobs": lp, "finish_reason": reason}


# ----------------------------------------------------------------------------- routes

@router.get("/v1/models", summary="The models served")
async def list_models(request: Request):
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": m.created, "owned_by": "lmforge",
         "root": m.path, "version": m.version, "kind": m.kind,
         "max_model_len": m.max_seq_len}
        for m in _server(request).models.values()]}


def _fim_ids(served: Any) -> Any:
    """The fill-in-the-middle sentinels of a served model, or a 400 on ``suffix``."""
    fim = FimIds.of(served.tokenizer)
    if fim is None:
        raise ApiError(f"model {served.name} was trained without fill-in-the-middle (its "
                       f"tokenizer has no {FIM_TOKENS[0]} token), so it cannot take a suffix",
                       param="suffix")
    return fim


@router.post("/v1/completions", summary="Complete prompts (OpenAI completions)",
             responses=_STREAMABLE)
async def completions(body: CompletionRequest, request: Request):
    served = _server(request).generator(body.model)
    tok = served.tokenizer
    fim = _fim_ids(served) if body.suffix is not None else None
    prompts, echo = [], []
    for i, p in enumerate(body.prompts()):
        if isinstance(p, str):
            prompts.append(encode_prompt(tok, p) if fim is None else
                           fim_prompt(tok, fim, tok.encode(p), tok.encode(body.suffix)))
            echo.append(p)
        else:
            if not p or not all(isinstance(t, int) and 0 <= t < served.engine.vocab for t in p):
                raise ApiError(f"prompt {i}: token ids must lie in [0, {served.engine.vocab})",
                               param="prompt")
            prompts.append(list(p) if fim is None else
                           fim_prompt(tok, fim, list(p), tok.encode(body.suffix)))
            echo.append(tok.decode(p, skip_special_tokens=True))
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    for p in prompts:
        _check_length(served, p, max_tokens, "max_tokens")
    stop_ids = _stop_ids(body, getattr(tok, "eos_id", None), served.engine.vocab)
    echoes = None
    if body.echo:
        echoes = [Echo(text) for text in echo]
        if body.logprobs is not None:
            for e, p in zip(echoes, prompts, strict=True):
                e.logprobs = await asyncio.to_thread(served.engine.prompt_logprobs, p,
                                                     body.logprobs)
    if max_tokens == 0:
        return _scored_prompts(request, body, served, prompts, echoes or [])
    return await _answer(request, "completion", served, body, lambda: _Generation(
        request, body, served, prompts, [max_tokens] * len(prompts), stop_ids,
        body.logprobs, "completion"), echoes)


def _scored_prompts(request: Request, body: CompletionRequest, served: Any,
                    prompts: list[list[int]], echoes: list[Echo]) -> JSONResponse:
    """``max_tokens: 0`` with ``echo``: the prompts themselves (with their logprobs),
    nothing generated."""
    choices = [{"index": i, "text": e.text, "finish_reason": "length",
                "logprobs": (_completion_logprobs(served.tokenizer, [], 0, e.logprobs)
                             if e.logprobs is not None else None)}
               for i, e in enumerate(e for e in echoes for _ in range(body.n))]
    n_prompt = sum(len(p) for p in prompts)
    _server(request).metrics.prompt_tokens.labels(served.name, served.version).inc(n_prompt)
    report_usage(request, served, n_prompt, 0)
    return JSONResponse({"id": _new_id("completion"), "object": "text_completion",
                         "created": int(time.time()), "model": served.name,
                         "choices": choices,
                         "usage": {"prompt_tokens": n_prompt, "completion_tokens": 0,
                                   "total_tokens": n_prompt}})


@router.post("/v1/chat/completions", summary="Answer a conversation (OpenAI chat)",
             responses=_STREAMABLE)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    from ..chat.generate import prompt_ids, reply_stopping
    from ..chat.messages import check_messages, check_prompt

    served = _server(request).generator(body.model)
    if served.template is None:
        raise ApiError(f"model {served.name} has no chat template (chat_template.jinja or "
                       "tokenizer_config.json's chat_template); use /v1/completions",
                       param="model")
    tok = served.tokenizer
    tools = check_tools(body.tools, body.tool_choice, _server(request).tool_parser,
                        body.parallel_tool_calls)
    if tools is not None and tools.schema is not None and body.json_schema is not None:
        raise ApiError("a JSON response_format cannot be combined with a required tool "
                       "call (tool_choice required or a named function)",
                       param="response_format")
    if tools is not None and not template_reads_tools(served.template):
        raise ApiError(f"model {served.name}'s chat template does not render tools, so the "
                       "model cannot see them", param="tools")
    try:
        msgs = check_messages(body.messages)
        check_prompt(msgs)
        ids = prompt_ids(served.template, tok, msgs, tools.tools if tools else None,
                         tools.prefill if tools else "")
    except LmforgeError as e:
        raise ApiError(str(e), param="messages") from None
    param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    max_tokens = body.length or served.max_seq_len - len(ids)
    _check_length(served, ids, max(1, max_tokens), param)
    config, end_id = reply_stopping(served.template, tok, GenerationConfig(stop=body.stops))
    body.stop = config.stop
    eos = end_id if end_id is not None else getattr(tok, "eos_id", None)
    stop_ids = _stop_ids(body, eos, served.engine.vocab)
    if tools is not None and tools.schema is not None and not stop_ids:
        raise ApiError("a required tool call needs a token that ends the output: do not "
                       "set ignore_eos, or give stop_token_ids", param="tool_choice")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return await _answer(request, "chat", served, body, lambda: _Generation(
        request, body, served, [ids], [max_tokens], stop_ids, logprobs, "chat", tools))


@router.post("/v1/embeddings", summary="Embed texts (OpenAI embeddings)")
async def embeddings(body: EmbeddingRequest, request: Request):
    server = _server(request)
    served = server.model(body.model)
    if served.encoder is None:
        raise ApiError(f"model {served.name} is a language model; embeddings need an "
                       "encoder (serve one, e.g. `lmforge serve ... minilm`)", param="model")
    enc = served.encoder
    if body.dimensions is not None and body.dimensions != enc.dim:
        raise ApiError(f"this model's embeddings have {enc.dim} dimensions",
                       param="dimensions")
    texts = body.texts
    vectors = await asyncio.to_thread(server.encode, served, texts)
    data = []
    for i, v in enumerate(vectors):
        v = np.asarray(v, dtype="<f4")
        emb = (base64.b64encode(v.tobytes()).decode() if body.encoding_format == "base64"
               else v.tolist())
        data.append({"object": "embedding", "index": i, "embedding": emb})
    limit = enc.max_length or enc.model.config.max_len
    tokens = sum(min(len(enc.tokenizer.encode(t.strip())) + 2, limit) for t in texts)
    report_usage(request, served, tokens, 0)
    return {"object": "list", "data": data, "model": served.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/tokenize", summary="Token ids of a prompt or a conversation (vLLM)")
async def tokenize(body: TokenizeRequest, request: Request):
    from ..chat.generate import template_variables
    from ..chat.messages import check_messages

    served = _server(request).model(body.model)
    tok = served.tokenizer
    if body.messages is not None:
        if served.template is None:
            raise ApiError(f"model {served.name} has no chat template", param="messages")
        try:
            text = served.template.render(check_messages(body.messages),
                                          add_generation_prompt=body.add_generation_prompt,
                                          **template_variables(tok)).text
        except LmforgeError as e:
            raise ApiError(str(e), param="messages") from None
        ids = tok.encode(text, allow_special=True)
    else:
        ids = encode_prompt(tok, body.prompt) if body.add_special_tokens \
            else list(tok.encode(body.prompt))
    return {"tokens": ids, "count": len(ids), "max_model_len": served.max_seq_len}


@router.post("/detokenize", summary="The text of token ids (vLLM)")
async def detokenize(body: DetokenizeRequest, request: Request):
    served = _server(request).model(body.model)
    vocab = served.tokenizer.vocab_size
    if any(not 0 <= t < vocab for t in body.tokens):
        raise ApiError(f"tokens must lie in [0, {vocab})", param="tokens")
    return {"prompt": served.tokenizer.decode(body.tokens, skip_special_tokens=False)}
