"""The decoding loop: one prefill, then one token per step for a whole batch.

Written by hand (generation is what lmforge teaches).

Prompts of different lengths are **left-padded** into one (B, P) batch, padding masked
out (``attention_mask`` 0), so every row's last prompt token sits in column P-1 and the
next tokens of all rows are appended in the same column. The model counts positions
over real tokens only, so a padded row computes exactly what it would alone.

With the KV cache (default) the prompt is run once (prefill, O(P^2) attention) and each
later step feeds only the B new tokens: one attention row over the cached keys and
values, O(T) per token instead of O(T^2) for recomputing the sequence. Rows that emit
``eos`` (or that the caller stops, e.g. on a stop string) are dropped from the batch with
``cache.reorder``, so finished rows cost nothing afterwards. That model-side state (the
padded prompts, the cache, and each row's tokens when a constraint reads them) is a
:class:`SequenceBatch`; beam search (:mod:`lmforge.generate.beam`) steps one too.

A prompt must leave room for its new tokens: ``len(prompt) + max_new_tokens <=
model.config.max_seq_len``, else :class:`PromptTooLongError` says by how much. Nothing is
truncated silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..errors import ConfigError, LmforgeError
from .config import GenerationConfig, autocast_context
from .constraints import TokenBans
from .sampling import sample_next
from .structured import JsonConstraint


class PromptTooLongError(LmforgeError, ValueError):
    """A prompt plus ``max_new_tokens`` does not fit in the model's ``max_seq_len``."""


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A private RNG: seeded when ``seed`` is given, else from OS entropy."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def check_prompts(prompts_ids: Sequence[Sequence[int]], max_new_tokens: int,
                  max_seq_len: int, vocab_size: int | None = None) -> None:
    """Raise a clear error for an empty, out-of-vocabulary or too long prompt."""
    for i, ids in enumerate(prompts_ids):
        if len(ids) == 0:
            raise LmforgeError(f"prompt {i} has no tokens; start every prompt with <bos>")
        if vocab_size is not None and (min(ids) < 0 or max(ids) >= vocab_size):
            raise LmforgeError(f"prompt {i} has token ids outside [0, {vocab_size})")
        need = len(ids) + max_new_tokens
        if need > max_seq_len:
            room, excess = max_seq_len - len(ids), need - max_seq_len
            fixes = [f"lower max_new_tokens to {room}"] if room >= 1 else []
            if excess < len(ids):  # shortening alone can make it fit
                fixes.append(f"shorten the prompt by {excess} tokens")
            fix = " or ".join(fixes).capitalize() + "." if fixes else \
                "Shorten the prompt and lower max_new_tokens."
            raise PromptTooLongError(
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} "
                f"it needs {need} positions but the model's max_seq_len is {max_seq_len}. "
                + fix)


class SequenceBatch:
    """The model's side of a batch of growing token sequences.

    :meth:`prefill` runs the left-padded prompts and returns the next-token logits;
    :meth:`append` adds one token to every row and returns the next logits;
    :meth:`select` keeps (or repeats: beam search) rows by index, in the KV cache and
    everywhere else. Also kept, when asked: ``histories``, each row's token ids (prompt
    included), ``seen`` (B, V), the tokens present in each row (the repetition
    penalty), and ``counts`` (B, V), how often each new token occurred (the presence and
    frequency penalties). Every step runs under ``torch.inference_mode``.
    """

    def __init__(self, model: torch.nn.Module, prompts: list[list[int]],
                 config: GenerationConfig, pad_id: int = 0, histories: bool = False):
        self.model, self.config, self.prompts, self.pad_id = model, config, prompts, pad_id
        self.device = model_device(model)
        self.histories = [list(p) for p in prompts] if histories else None
        self.seen: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self._cache = None
        self._ids = self._mask = None  # whole sequences, only without the cache
        self._autocast = config.autocast_dtype

    def _context(self):
        return autocast_context(self.device, self._autocast)

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        """Run the prompts; the logits of each row's next token (B, V) in fp32."""
        B, P = len(self.prompts), max(len(p) for p in self.prompts)
        ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P), dtype=torch.bool)
        for b, p in enumerate(self.prompts):
            ids[b, P - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[b, P - len(p):] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        padded = not bool(mask.all())
        with self._context():
            if self.config.use_cache:
                self._cache = self.model.new_cache(
                    B, max_len=P + self.config.max_new_tokens - 1, dtype=self._autocast)
                logits = self.model(ids, mask if padded else None, cache=self._cache,
                                    last_only=True)
            else:
                self._ids, self._mask = ids, mask
                logits = self.model(ids, mask if padded else None, last_only=True)
        logits = logits[:, -1].float()  # (B, V)
        if self.config.repetition_penalty != 1.0:
            counts = torch.zeros(B, logits.shape[-1], device=self.device)
            self.seen = counts.scatter_add_(1, ids, mask.float()) > 0
        if self.config.counts_new_tokens:
            self.counts = torch.zeros(B, logits.shape[-1], device=self.device)
        return logits

    @torch.inference_mode()
    def select(self, rows: list[int]) -> None:
        """Row ``r`` becomes a copy of row ``rows[r]`` (fewer rows: drop the others)."""
        index = torch.tensor(rows, device=self.device)
        if self._cache is not None:
            self._cache.reorder(index)
        if self._ids is not None:
            self._ids, self._mask = self._ids[index], self._mask[index]
        if self.seen is not None:
            self.seen = self.seen[index]
        if self.counts is not None:
            self.counts = self.counts[index]
        if self.histories is not None:
            self.histories = [list(self.histories[r]) for r in rows]

    @torch.inference_mode()
    def append(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (B,) to every row; return the next logits (B, V)."""
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=self.device), tokens] = True
        if self.counts is not None:
            self.counts[torch.arange(len(tokens), device=self.device), tokens] += 1
        if self.histories is not None:
            for h, t in zip(self.histories, tokens.tolist(), strict=True):
                h.append(t)
        with self._context():
            if self._cache is not None:
                logits = self.model(tokens[:, None], cache=self._cache, last_only=True)
            else:
                self._ids = torch.cat([self._ids, tokens[:, None]], dim=1)
                self._mask = torch.cat([self._mask, self._mask.new_ones(len(tokens), 1)], 1)
                padded = not bool(self._mask.all())
                logits = self.model(self._ids, self._mask if padded else None,
                                    last_only=True)
        return logits[:, -1].float()


class BatchDecoder:
    """Steps a batch of prompts one token at a time.

    Iterating yields ``(rows, tokens)`` once per step: the indices (into
    ``prompts_ids``) of the rows still running and the token each one just produced. A
    row ends after it yields ``eos_id``, after :meth:`stop` is called for it, or after
    ``max_new_tokens`` steps. Under ``torch.inference_mode`` only while computing, so
    the caller's code between steps runs in its own grad mode.

    ``bans`` (default: those of ``config`` that need no tokenizer) are the constraints'
    bans; each row's token history is kept only when they read it. ``grammars`` (one
    :class:`~lmforge.generate.structured.JsonConstraint` per prompt, needed with
    ``config.json_schema``) mask each row's logits and take each token it produces. Beam
    search (``config.num_beams > 1`` or ``force_words``) is :mod:`lmforge.generate.beam`.
    """

    def __init__(self, model: torch.nn.Module, prompts_ids: Sequence[Sequence[int]],
                 config: GenerationConfig, eos_id: int | None = None, pad_id: int = 0,
                 generator: torch.Generator | None = None, bans: TokenBans | None = None,
                 grammars: Sequence[JsonConstraint] | None = None):
        if config.beam_search:
            raise ConfigError("BatchDecoder picks one token per row; beam search "
                              "(num_beams > 1 or force_words) is lmforge.generate.beam")
        if config.json_schema is not None and grammars is None:
            raise ConfigError("json_schema needs a tokenizer: use generate, "
                              "generate_completions or complete_ids")
        self.grammars = grammars
        self.model, self.config, self.eos_id = model, config, eos_id
        self.prompts = [[int(t) for t in p] for p in prompts_ids]
        check_prompts(self.prompts, config.max_new_tokens, model.config.max_seq_len,
                      model.config.vocab_size)
        self.bans = bans if bans is not None else TokenBans.from_config(config, eos_id)
        self.seqs = SequenceBatch(model, self.prompts, config, pad_id,
                                  histories=self.bans.needs_history)
        self.generator = generator or make_generator(config.seed, self.seqs.device)
        self.rows = list(range(len(self.prompts)))  # original index of each batch row
        self._stopped: set[int] = set()

    def stop(self, row: int) -> None:
        """End ``row`` (an index into ``prompts_ids``) after the current step."""
        self._stopped.add(row)

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        n_new = self.config.max_new_tokens
        if n_new == 0 or not self.prompts:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.seqs.prefill()
            for step in range(n_new):
                tokens = self._sample(logits, step)
                token_list = tokens.tolist()
                rows = list(self.rows)
                if self.grammars is not None:
                    for r, t in zip(rows, token_list, strict=True):
                        self.grammars[r].advance(t)
                yield rows, token_list
                if step == n_new - 1:
                    return
                keep = [i for i, (r, t) in enumerate(zip(rows, token_list, strict=True))
                        if t != self.eos_id and r not in self._stopped]
                if not keep:
                    return
                if len(keep) < len(rows):
                    self.rows = [self.rows[i] for i in keep]
                    self.seqs.select(keep)
                    tokens = tokens[torch.tensor(keep, device=tokens.device)]
                logits = self.seqs.append(tokens)
        finally:
            self.model.train(was_training)

    @torch.inference_mode()
    def _sample(self, logits: torch.Tensor, n_new: int) -> torch.Tensor:
        banned = self.bans.banned(self.seqs.histories, n_new, len(logits)) \
            if self.bans.active else None
        allowed = None if self.grammars is None else torch.stack(
            [self.grammars[r].allowed() for r in self.rows]).to(logits.device)
        return sample_next(logits, self.config, self.seqs.seen, self.generator, banned,
                           self.seqs.counts, allowed)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), order-stable."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate_ids(model: torch.nn.Module, prompts_ids: Sequence[Sequence[int]],
                 config: GenerationConfig | None = None, eos_id: int | None = None,
                 pad_id: int = 0) -> list[list[int]]:
    """New token ids for each prompt (the prompt and the final ``eos`` not included).

    Prompts are batched ``config.batch_size`` at a time (grouped by length), each batch
    left-padded with ``pad_id``. A row stops at ``eos_id`` or after
    ``config.max_new_tokens``; ``config.stop`` strings, ``bad_words``, ``force_words``
    and ``json_schema`` need a tokenizer and are applied by
    :func:`lmforge.generate.generate`, not here.
    ``num_beams > 1`` runs :func:`lmforge.generate.beam.beam_search_ids` (the best beam).
    """
    config = config or GenerationConfig()
    check_prompts(prompts_ids, config.max_new_tokens, model.config.max_seq_len,
                  model.config.vocab_size)
    if config.beam_search:
        from .beam import beam_search_ids  # it steps a SequenceBatch: imports this module

        hyps = beam_search_ids(model, prompts_ids, config, eos_id, pad_id)
        return [h.tokens[:-1] if h.finished else h.tokens for h in hyps]
    generator = make_generator(config.seed, model_device(model))
    out: list[list[int]] = [[] for _ in prompts_ids]
    for batch in length_sorted_batches([len(p) for p in prompts_ids], config.batch_size):
        decoder = BatchDecoder(model, [prompts_ids[i] for i in batch], config, eos_id,
                               pad_id, generator)
        for rows, tokens in decoder:
            for r, t in zip(rows, tokens, strict=True):
                if t != eos_id:
                    out[batch[r]].append(t)
    return out
