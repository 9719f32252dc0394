"""Text generation with a KV cache: greedy, temperature, top-k, top-p, repetition
penalty, stop strings, batching with left padding, and streaming.

Written by hand: generation is part of what lmforge teaches. The math of each rule is
in :mod:`lmforge.generate.sampling` and ``docs/generation.md``.

Modules: ``config`` (:class:`GenerationConfig`), ``sampling`` (logits to next token),
``decode`` (the batched token loop on ids), ``text`` (prompts, detokenisation, stop
strings, streaming).
"""

from .config import GenerationConfig
from .decode import BatchDecoder, PromptTooLongError, generate_ids
from .sampling import (
    apply_repetition_penalty,
    process_logits,
    sample_next,
    top_k_filter,
    top_p_filter,
)
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
    "Completion",
    "GenerationConfig",
    "IncrementalDetokenizer",
    "PromptTooLongError",
    "StopMatcher",
    "apply_repetition_penalty",
    "complete_ids",
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
]
