"""Text generation with a KV cache: greedy, temperature, top-k, top-p, repetition
penalty, stop strings, batching with left padding, streaming, decode-time constraints
(bad words, forced words, minimum length, no repeated n-gram), JSON that follows a schema
(structured outputs) and beam search.

Written by hand: generation is part of what lmforge teaches. The math of each rule is
in :mod:`lmforge.generate.sampling` and ``docs/generation.md``.

Modules: ``config`` (:class:`GenerationConfig`), ``sampling`` (logits to next token),
``constraints`` (words as token sequences, the bans they cause, forced words),
``structured`` (the grammar mask of a JSON schema), ``decode`` (the batched token loop
on ids), ``beam`` (beam search, forced words),
``text`` (prompts, detokenisation, stop strings, streaming).
"""

from .beam import BeamHypothesis, beam_search_ids
from .config import GenerationConfig
from .constraints import (
    ForcedWords,
    Speller,
    TokenBans,
    UnencodableWordError,
    build_constraints,
    word_sequences,
)
from .decode import BatchDecoder, PromptTooLongError, SequenceBatch, generate_ids
from .sampling import (
    apply_repetition_penalty,
    ban_tokens,
    constrain_logits,
    process_logits,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from .structured import JsonConstraint
from .text import (
    Completion,
    IncrementalDetokenizer,
    StopMatcher,
    complete_ids,
    encode_prompt,
    generate,
    generate_completions,
    stream,
    stream_ids,
)

__all__ = [
    "BatchDecoder",
    "BeamHypothesis",
    "Completion",
    "ForcedWords",
    "GenerationConfig",
    "IncrementalDetokenizer",
    "JsonConstraint",
    "PromptTooLongError",
    "SequenceBatch",
    "Speller",
    "StopMatcher",
    "TokenBans",
    "UnencodableWordError",
    "apply_repetition_penalty",
    "ban_tokens",
    "beam_search_ids",
    "build_constraints",
    "complete_ids",
    "constrain_logits",
    "encode_prompt",
    "generate",
    "generate_completions",
    "generate_ids",
    "process_logits",
    "sample_next",
    "stream",
    "stream_ids",
    "top_k_filter",
    "top_p_filter",
    "word_sequences",
]
