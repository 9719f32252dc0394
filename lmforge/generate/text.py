"""Text in, text out: prompts, incremental detokenisation, stop strings, streaming.

Written by hand (generation is what lmforge teaches).

A prompt is encoded as ``[bos] + tokenizer.encode(prompt)``, the way documents start in
the training data, so an empty prompt is just ``[bos]``. Generation stops at ``eos``.

**Incremental detokenisation.** A token is not always a whole character: byte-level BPE
splits a Chinese character into byte tokens, and decoding a partial UTF-8 sequence gives
U+FFFD. Some decoders also drop a leading space when a token is decoded alone. So text
is decoded over a short window that starts a few tokens back (in the prompt at first)
and a delta is released only when the window's text grew and does not end in U+FFFD.
The concatenated deltas are the completion: the text after the prompt.

**Stop strings.** The completion text is scanned for each stop string as it grows; the
row ends as soon as the text contains one and is cut just before it (if several end at
the same character, before the longest). While the text ends
with a prefix of a stop string (``"\\n"`` of ``"\\n\\n"``) that tail is held back, so a
stream never shows any part of a stop string; it is released once it cannot start one.
``"".join(stream(...)) == generate(...)`` for the same config and seed.

**Beam search** (``num_beams > 1`` or ``force_words``, :mod:`lmforge.generate.beam`)
knows its result only at the end: the best beam's tokens are decoded as above and cut at
the first stop string, and streaming it is a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import ConfigError, LmforgeError
from .beam import BeamEnd, BeamHypothesis, beam_search_ids
from .config import GenerationConfig, resolve_config
from .constraints import TokenBans, build_constraints
from .decode import (
    BatchDecoder,
    check_prompts,
    length_sorted_batches,
    make_generator,
    model_device,
)
from .structured import JsonConstraint

CONTEXT_TOKENS = 4  # prompt tokens decoded with the first new tokens (leading spaces)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """``[bos] + tokenizer.encode(prompt)`` (without ``bos`` if the tokenizer has none)."""
    if not isinstance(prompt, str):
        raise LmforgeError(f"a prompt must be a string, got {type(prompt).__name__}")
    if tokenizer is None:
        raise LmforgeError("text generation needs a tokenizer, got None (the model folder "
                           "has no tokenizer.json)")
    ids = list(tokenizer.encode(prompt))
    bos = getattr(tokenizer, "bos_id", None)
    return ([bos] if bos is not None else []) + ids


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of stable text deltas."""

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.ids = list(context)
        self.prefix = 0  # start of the decoding window
        self.read = len(self.ids)  # tokens before this are already released as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _delta(self, final: bool) -> str:
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or (not final and after.endswith("\ufffd")):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]

    def push(self, token: int) -> str:
        """Add one token; return the text it made stable (often ``""``)."""
        self.ids.append(token)
        return self._delta(final=False)

    def flush(self) -> str:
        """The text still held back (a trailing partial character decodes as U+FFFD)."""
        return self._delta(final=True)


class StopMatcher:
    """Cuts a growing text at the first stop string and holds back possible beginnings."""

    def __init__(self, stops: Sequence[str]):
        self.stops = list(stops)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self.emitted = 0  # characters of self.text already released
        self.stopped = False

    def _held(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of a stop."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add ``delta``; return (text safe to release, whether a stop string matched)."""
        if self.stopped:
            return "", True
        if not self.stops:
            return delta, False
        start = max(0, len(self.text) - self.longest + 1)
        self.text += delta
        # The first stop string to be completed wins (earliest end; then the longest), so
        # the cut does not depend on how the text was split into deltas.
        hits = [(i + len(s), i) for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            cut = min(hits)[1]
            out = self.text[self.emitted:cut]
            self.text, self.emitted, self.stopped = self.text[:cut], cut, True
            return out, True
        end = max(self.emitted, len(self.text) - self._held())
        out, self.emitted = self.text[self.emitted:end], end
        return out, False

    def flush(self) -> str:
        """Release the held-back tail (the text ended without completing a stop)."""
        if self.stopped:
            return ""
        out, self.emitted = self.text[self.emitted:], len(self.text)
        return out


@dataclass
class Completion:
    """One prompt's result. ``finish_reason``: ``"eos"``, ``"stop"`` (a stop string) or
    ``"length"`` (``max_new_tokens`` reached). ``token_ids`` excludes ``eos`` and may run
    past a stop string (the text does not)."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: Literal["eos", "stop", "length"] | None = None
    prompt_tokens: int = 0


class TextRow:
    """The text of one running prompt: :meth:`push` each new token, :meth:`end` at
    ``eos`` or the length limit; each returns the text it released (detokenised, cut at
    a stop string, holding back a possible stop string's start). Also used by the
    serving engine (:mod:`lmforge.serve.engine`), so both give the same text."""

    def __init__(self, tokenizer: Any, prompt_ids: list[int], stops: list[str]):
        self.detok = IncrementalDetokenizer(tokenizer, prompt_ids[-CONTEXT_TOKENS:])
        self.stopper = StopMatcher(stops)
        self.result = Completion(prompt_tokens=len(prompt_ids))
        self.pieces: list[str] = []

    def _emit(self, delta: str, final: bool) -> str:
        out, stopped = self.stopper.feed(delta)
        if stopped:
            self.result.finish_reason = "stop"
        elif final:
            out += self.stopper.flush()
        self.pieces.append(out)
        return out

    def push(self, token: int) -> str:
        self.result.token_ids.append(token)
        return self._emit(self.detok.push(token), final=False)

    def end(self, reason: Literal["eos", "length"]) -> str:
        out = self._emit(self.detok.flush(), final=True)
        if self.result.finish_reason is None:
            self.result.finish_reason = reason
        return out

    @property
    def done(self) -> bool:
        return self.result.finish_reason is not None

    def completion(self) -> Completion:
        self.result.text = "".join(self.pieces)
        return self.result


def _encode_all(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str],
                config: GenerationConfig) -> list[list[int]]:
    """Encode and check every prompt before any generation starts."""
    prompt_ids = [encode_prompt(tokenizer, p) for p in prompts]
    check_prompts(prompt_ids, config.max_new_tokens, model.config.max_seq_len,
                  model.config.vocab_size)
    return prompt_ids


def _specials(tokenizer: Any, eos: int | None) -> tuple[int | None, int]:
    """``(eos, pad)``: ``eos`` defaults to the tokenizer's; ``pad`` is the tokenizer's,
    else ``eos``, else 0."""
    eos = eos if eos is not None else getattr(tokenizer, "eos_id", None)
    pad = getattr(tokenizer, "pad_id", None)
    return eos, pad if pad is not None else (eos if eos is not None else 0)


def _run(model: torch.nn.Module, tokenizer: Any, prompt_ids: list[list[int]],
         config: GenerationConfig, results: list[Completion], eos: int | None, pad: int,
         bans: TokenBans) -> Iterator[tuple[int, str]]:
    """Yield ``(prompt index, text delta)`` as text becomes stable; fill ``results``."""
    generator = make_generator(config.seed, model_device(model))
    for batch in length_sorted_batches([len(p) for p in prompt_ids], config.batch_size):
        rows = [TextRow(tokenizer, prompt_ids[i], config.stop) for i in batch]
        grammars = None if config.json_schema is None else [
            JsonConstraint(config.json_schema, tokenizer, model.config.vocab_size,
                           [] if eos is None else [eos]) for _ in batch]
        decoder = BatchDecoder(model, [prompt_ids[i] for i in batch], config, eos, pad,
                               generator, bans, grammars)
        for active, tokens in decoder:
            for r, t in zip(active, tokens, strict=True):
                row = rows[r]
                delta = row.end("eos") if t == eos else row.push(t)
                if row.done:
                    decoder.stop(r)
                if delta:
                    yield batch[r], delta
        for r, row in enumerate(rows):
            if not row.done:
                delta = row.end("length")
                if delta:
                    yield batch[r], delta
            results[batch[r]] = row.completion()


def _beam_completion(tokenizer: Any, prompt_ids: list[int], hyp: BeamHypothesis,
                     stops: list[str]) -> Completion:
    """A beam-search result as text, cut at the first stop string."""
    row = TextRow(tokenizer, prompt_ids, stops)
    for t in hyp.tokens[:-1] if hyp.finished else hyp.tokens:
        row.push(t)
    row.end("eos" if hyp.finished else "length")
    return row.completion()


def _completions(model: torch.nn.Module, tokenizer: Any, prompt_ids: list[list[int]],
                 config: GenerationConfig, eos: int | None = None,
                 ends: Sequence[BeamEnd] | None = None) -> list[Completion]:
    """Every prompt's :class:`Completion`, by beam search when ``config.beam_search``,
    else token by token. A row ends at ``eos`` (default: the tokenizer's)."""
    eos, pad = _specials(tokenizer, eos)
    bans, forced = build_constraints(config, tokenizer, eos)
    if ends is not None and not config.beam_search:
        raise ConfigError("end rules (ends=) need beam search: set num_beams > 1")
    if config.beam_search:
        hyps = beam_search_ids(model, prompt_ids, config, eos, pad, bans=bans, forced=forced,
                               ends=ends)
        return [_beam_completion(tokenizer, ids, hyp, config.stop)
                for ids, hyp in zip(prompt_ids, hyps, strict=True)]
    results: list[Completion] = [Completion() for _ in prompt_ids]
    for _ in _run(model, tokenizer, prompt_ids, config, results, eos, pad, bans):
        pass
    return results


def _stream(model: torch.nn.Module, tokenizer: Any, prompt_ids: list[int],
            config: GenerationConfig, eos: int | None = None) -> Iterator[str]:
    """The text deltas of one prompt (checked now, generated as the caller iterates)."""
    if config.beam_search:
        raise ConfigError("streaming cannot run beam search (num_beams > 1 or force_words): "
                          "the best beam is known only at the end; use generate")
    eos, pad = _specials(tokenizer, eos)
    bans, _ = build_constraints(config, tokenizer, eos)
    return (delta for _, delta in _run(model, tokenizer, [prompt_ids], config,
                                       [Completion()], eos, pad, bans))


def generate_completions(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str],
                         config: GenerationConfig | None = None,
                         **overrides: Any) -> list[Completion]:
    """Like :func:`generate` for a list, with token ids and the reason each row stopped."""
    config = resolve_config(config, overrides)
    prompt_ids = _encode_all(model, tokenizer, prompts, config)
    return _completions(model, tokenizer, prompt_ids, config)


def generate(model: torch.nn.Module, tokenizer: Any, prompts: str | Sequence[str],
             config: GenerationConfig | None = None, **overrides: Any) -> str | list[str]:
    """Complete each prompt; return only the new text, cut before any stop string.

    ``overrides`` replace fields of ``config`` (``generate(m, tok, "Hi", temperature=0)``).
    A single string gives a string, a list gives a list in the same order. With
    ``num_beams > 1`` or ``force_words`` the completion is the best beam
    (:mod:`lmforge.generate.beam`), cut at the first stop string.
    """
    single = isinstance(prompts, str)
    results = generate_completions(model, tokenizer, [prompts] if single else prompts,
                                   config, **overrides)
    texts = [r.text for r in results]
    return texts[0] if single else texts


def stream(model: torch.nn.Module, tokenizer: Any, prompt: str,
           config: GenerationConfig | None = None, **overrides: Any) -> Iterator[str]:
    """Yield the completion of ``prompt`` piece by piece as it becomes decodable.

    Each piece is whole characters (never a partial UTF-8 sequence) and no piece
    contains any part of a stop string; the pieces join to ``generate``'s result.
    Beam search (``num_beams > 1`` or ``force_words``) cannot stream: ``ConfigError``.
    """
    config = resolve_config(config, overrides)  # errors surface here, not at next()
    prompt_ids = _encode_all(model, tokenizer, [prompt], config)
    return _stream(model, tokenizer, prompt_ids[0], config)


def complete_ids(model: torch.nn.Module, tokenizer: Any,
                 prompts_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                 *, eos_id: int | None = None, ends: Sequence[BeamEnd] | None = None,
                 **overrides: Any) -> list[Completion]:
    """:func:`generate_completions` for prompts given as token ids, batched, each row
    ending at ``eos_id`` (default: the tokenizer's ``eos``), or, in beam search, where
    its rule in ``ends`` says (:mod:`lmforge.generate.beam`; the ending token is left
    out of the text, as ``eos`` is)."""
    config = resolve_config(config, overrides)
    ids = [list(p) for p in prompts_ids]
    check_prompts(ids, config.max_new_tokens, model.config.max_seq_len,
                  model.config.vocab_size)
    return _completions(model, tokenizer, ids, config, eos_id, ends)


def stream_ids(model: torch.nn.Module, tokenizer: Any, prompt_ids: Sequence[int],
               config: GenerationConfig | None = None, *, eos_id: int | None = None,
               **overrides: Any) -> Iterator[str]:
    """:func:`stream` for a prompt given as token ids (a chat template's rendering, with
    its special tokens), ending at ``eos_id`` (default: the tokenizer's ``eos``)."""
    config = resolve_config(config, overrides)
    ids = list(prompt_ids)
    check_prompts([ids], config.max_new_tokens, model.config.max_seq_len,
                  model.config.vocab_size)
    return _stream(model, tokenizer, ids, config, eos_id)
