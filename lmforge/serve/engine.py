r"""The serving engine: continuous batching of text generation on one thread.

Written by hand: continuous batching is what lmforge teaches about serving.

**A request** is one sequence: prompt token ids, its own :class:`~lmforge.generate.
GenerationConfig` (temperature, top-k/p, penalties, seed, stop strings, length) and a
callback that receives :class:`Event`\ s. The HTTP layer turns ``n`` choices into ``n``
requests.

**The loop** (one thread, so the model's matmuls use the intra-op threads and Python
runs between them) repeats:

1. *Admit*: move waiting requests into prefill while fewer than ``max_running``
   sequences are prefilling or running. Waiting is a bounded queue: past
   ``max_waiting`` :meth:`Engine.submit` raises :class:`EngineFull` (the server
   answers 503) instead of growing memory.
2. *Prefill*: run up to ``prefill_chunk`` prompt tokens, oldest request first, into that
   request's own one-row cache, which first receives the longest cached prefix
   (:mod:`lmforge.serve.prefix`). A long prompt is cut into chunks across several
   iterations, so the running sequences keep decoding while it fills (chunked
   prefill). A finished prompt stores its blocks in the prefix cache, samples its first
   token and joins the running batch (:mod:`lmforge.serve.slots`).
3. *Decode*: one forward pass over every running row (one new token each), then each
   row picks its next token with its own rules and random generator. Rows that end
   (``eos`` or another stop id, a stop string, the length limit, a cancellation, the
   timeout) leave the batch at once, freeing their slot for the next admission.

**Same output as** ``lmforge generate``. A request's prompt, rules and seed give the
tokens and text that :func:`lmforge.generate.generate` gives for that prompt alone: the
rules are the same functions (:func:`~lmforge.generate.process_logits`, then argmax or
``torch.multinomial`` with a generator seeded by the request's ``seed``), and the text
goes through the same :class:`~lmforge.generate.text.TextRow` (detokenisation, stop
strings held back until they cannot match). Batching changes nothing: a row's keys and
positions are its own (the batch's other rows are masked out).

**Structured outputs.** A request whose config has a ``json_schema`` carries its own
grammar state: its logits are masked to the tokens the grammar allows before its own
sampling rules run, so a constrained row changes nothing for the rows beside it.

**Log-probabilities** are those of the model's distribution, ``log_softmax`` of the raw
logits, before penalties and temperature (vLLM's default).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import LmforgeError
from ..generate.config import GenerationConfig, autocast_context
from ..generate.decode import check_prompts, make_generator, model_device
from ..generate.sampling import process_logits
from ..generate.structured import JsonConstraint
from ..generate.text import TextRow
from ..models.gpt import KVCache
from .prefix import PrefixCache
from .slots import SlotCache

log = logging.getLogger("lmforge.serve")

_ids = itertools.count()


class EngineFull(LmforgeError):
    """The waiting queue is full: the server is overloaded (HTTP 503)."""


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token, its log-probability and the ``top`` most likely alternatives."""

    token: int
    logprob: float | None  # None for a prompt's first token (nothing predicts it)
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Event:
    """What one request produced in one engine iteration (delivered in order).

    ``text`` is the newly released text (often ``""`` while a character or a possible
    stop string is incomplete). ``finish_reason`` is set on the last event: ``"eos"``
    (the end-of-sequence token or another stop id), ``"stop"`` (a stop string),
    ``"length"``, ``"cancelled"``, ``"timeout"`` or ``"error"`` (then ``error`` says
    why). ``completion_tokens`` counts every token the model generated, a final ``eos``
    included; ``cached_tokens`` the prompt tokens found in the prefix cache."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    error: str | None = None


@dataclass
class Request:
    """One sequence to generate (module docstring). ``stop_ids`` end the sequence like
    ``eos`` (pass the tokenizer's ``eos`` here, or nothing to ignore it); ``logprobs``
    None asks for none, ``k >= 0`` for the chosen token's and the ``k`` best; ``timeout``
    (seconds from submission) ends the request with ``finish_reason="timeout"``.
    ``grammar`` is set by :meth:`Engine.submit` when ``config.json_schema`` is given: the
    sequence's own grammar state (:class:`~lmforge.generate.structured.JsonConstraint`,
    ending at ``stop_ids``)."""

    prompt: list[int]
    config: GenerationConfig
    emit: Callable[[Event], None]
    stop_ids: frozenset[int] = frozenset()
    logprobs: int | None = None
    timeout: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: bool = False
    submitted: float = field(default_factory=time.monotonic)
    grammar: JsonConstraint | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """End the request at the next iteration (the client went away); thread-safe."""
        self.cancelled = True


class _Sequence:
    """The engine's state of one request."""

    def __init__(self, req: Request, tokenizer: Any, vocab: int, device: torch.device):
        self.req, self.cfg = req, req.config
        self.text = TextRow(tokenizer, req.prompt, self.cfg.stop)
        self.generator = None if self.cfg.greedy else make_generator(self.cfg.seed, device)
        self.seen = self.counts = None
        if self.cfg.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.seen[torch.tensor(req.prompt, device=device)] = True
        if self.cfg.counts_new_tokens:
            self.counts = torch.zeros(vocab, device=device)
        self.cache: KVCache | None = None  # the one-row cache while prefilling
        self.computed = 0  # prompt tokens in the cache so far
        self.cached_tokens = 0
        self.n_new = 0
        self.last = -1  # the newest token, the next decode step's input

    @property
    def expired(self) -> bool:
        t = self.req.timeout
        return t is not None and time.monotonic() - self.req.submitted > t


class Engine:
    """Continuous batching over one GPT (module docstring). :meth:`start` runs the loop
    on a daemon thread; :meth:`submit` and :meth:`Request.cancel` may be called from
    any thread; events are delivered on the engine thread (hand them to your event
    loop with ``loop.call_soon_threadsafe``)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_running: int = 16,
                 max_waiting: int = 256, prefill_chunk: int = 512, prefix_cache_tokens: int = 4096,
                 block_size: int = 16, cache_margin: int = 256,
                 autocast: torch.dtype | None = None):
        if max_running < 1 or max_waiting < 0 or prefill_chunk < 1 or cache_margin < 1:
            raise LmforgeError("max_running, prefill_chunk and cache_margin must be >= 1 "
                               "and max_waiting >= 0")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_seq_len = model.config.max_seq_len
        self.vocab = model.config.vocab_size
        self.device = model_device(model)
        self.autocast = autocast
        self.max_running, self.max_waiting = max_running, max_waiting
        self.prefill_chunk = prefill_chunk
        kv_dtype = autocast if autocast is not None else model.wte.weight.dtype
        self.slots = SlotCache(model, max_running, self.max_seq_len + cache_margin, kv_dtype)
        self.kv_dtype = kv_dtype
        self.prefix = PrefixCache(block_size, prefix_cache_tokens)
        self._waiting: collections.deque[Request] = collections.deque()
        self._prefilling: collections.deque[_Sequence] = collections.deque()
        self._rows: list[_Sequence] = []  # running, in slot order
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.generated_tokens = 0

    # --------------------------------------------------------------------- public

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._rows) + len(self._prefilling)

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lmforge-engine",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop; requests still queued or running end with ``"cancelled"``."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        for req in list(self._waiting):
            req.emit(Event(finish_reason="cancelled", prompt_tokens=len(req.prompt)))
        for seq in [*self._prefilling, *self._rows]:
            self._finish(seq, "cancelled")
        self._waiting.clear()
        self._prefilling.clear()
        self._rows.clear()

    def check(self, prompt: Sequence[int], config: GenerationConfig) -> None:
        """Raise :class:`LmforgeError` when the prompt cannot run (empty, unknown ids,
        longer than the context with ``max_new_tokens``)."""
        check_prompts([list(prompt)], config.max_new_tokens, self.max_seq_len, self.vocab)
        if config.beam_search or config.bad_words or config.no_repeat_ngram_size:
            raise LmforgeError("the serving engine samples one token per step: beam "
                               "search, bad words and no_repeat_ngram_size are not served")

    def submit(self, req: Request) -> Request:
        """Queue ``req``; :class:`EngineFull` when ``max_waiting`` requests wait. Its
        grammar, if any, is built here (on the caller's thread, errors raised here)."""
        self.check(req.prompt, req.config)
        if req.config.json_schema is not None:
            req.grammar = JsonConstraint(req.config.json_schema, self.tokenizer, self.vocab,
                                         req.stop_ids)
        with self._cv:
            if self._closing:
                raise EngineFull("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise EngineFull(f"the server is at capacity: {self.max_running} running "
                                 f"and {len(self._waiting)} waiting")
            self._waiting.append(req)
            self._cv.notify()
        return req

    # --------------------------------------------------------------------- loop

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._waiting or self._prefilling or self._rows or self._closing):
                    self._cv.wait()
                if self._closing:
                    return
                while self._waiting and self.num_running < self.max_running:
                    # counted as prefilling before it stops counting as waiting, so
                    # num_running + num_waiting never reads 0 for a live request
                    self._prefilling.append(_Sequence(self._waiting[0], self.tokenizer,
                                                      self.vocab, self.device))
                    self._waiting.popleft()
            try:
                self._drop_ended()
                self._prefill()
                self._decode()
            except Exception as e:  # a bug must not hang every client: fail them all
                log.exception("engine step failed")
                for seq in [*self._prefilling, *self._rows]:
                    self._finish(seq, "error", error=f"internal error: {type(e).__name__}")
                self._prefilling.clear()
                self._rows.clear()
                self.slots.n = 0

    def _context(self):
        return autocast_context(self.device, self.autocast)

    def prompt_logprobs(self, prompt: list[int], k: int) -> list[TokenLogprob]:
        """Each prompt token's log-probability given the tokens before it, with the ``k``
        most likely tokens at that position; the first token has none (``logprob``
        None). One forward pass on the calling thread, beside the engine's (the model
        keeps no state between calls): ``echo`` with ``logprobs``, which is how
        lm-evaluation-harness scores continuations."""
        ids = torch.tensor([prompt], device=self.device)
        with torch.no_grad(), self._context():
            logits = self.model(ids)[0]  # (T, V)
        return [TokenLogprob(prompt[0], None)] + [
            _logprob(logits[t - 1], prompt[t], k) for t in range(1, len(prompt))]

    def _drop_ended(self) -> None:
        """Cancelled and timed-out requests leave before the next forward pass."""
        with self._cv:
            for req in [r for r in self._waiting if r.cancelled]:
                self._waiting.remove(req)
                req.emit(Event(finish_reason="cancelled", prompt_tokens=len(req.prompt)))
        for seq in [s for s in self._prefilling if s.req.cancelled or s.expired]:
            self._prefilling.remove(seq)
            self._finish(seq, "cancelled" if seq.req.cancelled else "timeout")
        for r in reversed(range(len(self._rows))):
            seq = self._rows[r]
            if seq.req.cancelled or seq.expired:
                self._leave(r)
                self._finish(seq, "cancelled" if seq.req.cancelled else "timeout")

    @torch.inference_mode()
    def _prefill(self) -> None:
        """Prefill up to ``prefill_chunk`` prompt tokens, oldest request first; a
        sequence whose prefill fails ends alone, with an error."""
        budget = self.prefill_chunk
        while self._prefilling and budget > 0:
            seq = self._prefilling[0]
            try:
                budget -= self._prefill_chunk(seq, budget)
            except Exception as e:
                log.exception("prefill of sequence %s failed", seq.req.id)
                self._prefilling.popleft()
                self._finish(seq, "error", error=f"internal error: {type(e).__name__}: {e}")

    def _prefill_chunk(self, seq: _Sequence, budget: int) -> int:
        """Run the next at most ``budget`` prompt tokens of ``seq``; when the prompt is
        done, sample its first token and join the batch. Returns the tokens run."""
        prompt = seq.req.prompt
        if seq.cache is None:
            seq.cache = KVCache(self.model.config, 1, len(prompt), self.device,
                                self.kv_dtype)
            n, k, v = self.prefix.lookup(prompt)
            if n:
                seq.cache.k[:, 0, :, :n] = k
                seq.cache.v[:, 0, :, :n] = v
                seq.cache.length = seq.computed = seq.cached_tokens = n
        take = min(budget, len(prompt) - seq.computed)
        ids = torch.tensor([prompt[seq.computed:seq.computed + take]], device=self.device)
        with self._context():
            logits = self.model(ids, cache=seq.cache, last_only=True)
        seq.computed += take
        if seq.computed == len(prompt):
            self._prefilling.popleft()
            self.prefix.store(prompt, seq.cache.k[:, 0], seq.cache.v[:, 0])
            if not self._advance(seq, logits[:, -1].float()):
                self.slots.join(seq.cache)
                self._rows.append(seq)
            seq.cache = None
        return take

    @torch.inference_mode()
    def _decode(self) -> None:
        if not self._rows:
            return
        tokens = torch.tensor([[s.last] for s in self._rows], device=self.device)
        with self._context():
            logits = self.model(tokens, cache=self.slots.step_view(), last_only=True)
        logits = logits[:, -1].float()
        ended = [r for r, seq in enumerate(self._rows) if self._advance(seq, logits[r:r + 1])]
        for r in reversed(ended):
            self._leave(r)

    def _leave(self, r: int) -> None:
        moved = self.slots.leave(r)
        if moved is None:
            self._rows.pop(r)
        else:
            self._rows[r] = self._rows.pop(moved)

    # --------------------------------------------------------------------- tokens

    def _advance(self, seq: _Sequence, logits: torch.Tensor) -> bool:
        """Pick ``seq``'s next token from its logits (1, V), release its text, and say
        whether the sequence ended. A failure ends this sequence alone, with an error."""
        try:
            return self._next_token(seq, logits)
        except Exception as e:
            log.exception("sequence %s failed", seq.req.id)
            self._finish(seq, "error", error=f"internal error: {type(e).__name__}: {e}")
            return True

    def _next_token(self, seq: _Sequence, logits: torch.Tensor) -> bool:
        cfg = seq.cfg
        stop_ids = seq.req.stop_ids
        banned = [sorted(stop_ids)] if stop_ids and seq.n_new < cfg.min_new_tokens else None
        grammar = seq.req.grammar
        allowed = None if grammar is None else grammar.allowed()[None].to(logits.device)
        scores = process_logits(logits, cfg, None if seq.seen is None else seq.seen[None],
                                banned, None if seq.counts is None else seq.counts[None],
                                allowed)
        if cfg.greedy:
            token = int(scores.argmax(dim=-1))
        else:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=seq.generator))
        if grammar is not None:
            grammar.advance(token)
        seq.n_new += 1
        seq.last = token
        self.generated_tokens += 1
        if seq.seen is not None:
            seq.seen[token] = True
        if seq.counts is not None:
            seq.counts[token] += 1
        event = Event(tokens=[token])
        if seq.req.logprobs is not None:
            event.logprobs.append(_logprob(logits[0], token, seq.req.logprobs))
        if token in stop_ids:
            event.text = seq.text.end("eos")
        else:
            event.text = seq.text.push(token)
            if not seq.text.done and seq.n_new >= cfg.max_new_tokens:
                event.text += seq.text.end("length")
        if seq.text.done:
            self._finish(seq, seq.text.result.finish_reason, event)
            return True
        seq.req.emit(event)
        return False

    def _finish(self, seq: _Sequence, reason: str, event: Event | None = None,
                error: str | None = None) -> None:
        event = event or Event()
        event.finish_reason, event.error = reason, error
        event.prompt_tokens = len(seq.req.prompt)
        event.completion_tokens = seq.n_new
        event.cached_tokens = seq.cached_tokens
        seq.req.emit(event)


def _logprob(logits: torch.Tensor, token: int, k: int) -> TokenLogprob:
    """The token's log-probability under ``softmax(logits)`` and the ``k`` best."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    top: tuple[tuple[int, float], ...] = ()
    if k:
        values, ids = torch.topk(logp, k)
        top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprob(token, float(logp[token]), top)
