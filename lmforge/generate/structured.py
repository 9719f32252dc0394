r"""Structured outputs: text that is JSON following a JSON schema, by constrained decoding.

The grammar engine is ``llguidance`` (the one vLLM and llama.cpp use; the ``serve``
extra): it compiles a JSON schema to a grammar and, given the tokens so far, computes
the set :math:`A_t` of tokens that keep the text a prefix of some document the schema
accepts. lmforge writes by hand only the part generation teaches: how that set acts on
the distribution.

**Masking is renormalising.** With the logits :math:`z` after the penalties and the
logit bias, every token outside :math:`A_t` gets :math:`z_v \leftarrow -\infty`, so

.. math:: p'_v = \frac{[v \in A_t]\, e^{z_v / \tau}}{\sum_{u \in A_t} e^{z_u / \tau}}
          = p(v \mid v \in A_t),

the model's distribution conditioned on staying inside the grammar; temperature, top-k
and top-p then act on that renormalised distribution (greedy: the argmax over
:math:`A_t`). The masked tokens have probability exactly 0, so every sampled text is a
prefix of a valid document; the text is a whole valid document when the row ends at
its end-of-sequence token.

**The end of the document.** The end ids (``eos``, a chat template's end of turn, a
request's stop ids) are allowed exactly when the text so far is a complete document
(the grammar is *accepting*); once no further character could be added (the grammar is
*stopped*, e.g. after the closing ``}`` of an object) they are the only tokens allowed,
so the row ends there and its finish reason is ``stop``. A row that reaches
``max_new_tokens`` first ends mid-document (finish reason ``length``), as in OpenAI's
API.

**Layout.** Documents are written as Python's ``json.dumps`` writes them: ``", "``
between items, ``": "`` after keys, no other whitespace (:data:`LAYOUT`), and object
properties in the schema's order. Free whitespace would let a model wander (a weak one
writes tabs and newlines until it runs out of tokens); a schema may still ask for it
with llguidance's ``"x-guidance": {"whitespace_flexible": true}``.

``{"type": "json_object"}`` (any JSON object) is the schema :data:`JSON_OBJECT`.

**Text after the document.** A schema with lmforge's keyword :data:`AFTER` (a string)
makes the output the document followed by exactly that text (llguidance's Lark grammar
``start: %json{schema} "text"``); the row ends once the text is written. The function
calls of :mod:`lmforge.serve.tool_parsers` use it to close a call
(``\n</tool_call>``).

**Several documents.** A schema with lmforge's keyword :data:`REPEAT` (a string) makes
the output one or more items separated by exactly that text, an item being the document
followed by the :data:`AFTER` text (if any): ``item (REPEAT item)*``, llguidance's Lark
grammar ``start: item (sep item)*`` with ``item: %json{schema} "after"``. The end ids
are allowed after each whole item (the grammar is accepting there), so the row ends
after any of them; it is never stopped, since another item may follow. Parallel
function calls use it (``; `` between two ``llama3_json`` calls).
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LmforgeError
from ..extras import require_extra

JSON_OBJECT: dict[str, Any] = {"type": "object"}  # OpenAI's response_format json_object
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
AFTER = "x-lmforge-after"  # literal text the document is followed by (module docstring)
REPEAT = "x-lmforge-repeat"  # literal text that starts another document (module docstring)

_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _llguidance() -> Any:
    return require_extra("llguidance", "serve", "structured outputs (json_schema)")


@functools.lru_cache(maxsize=256)
def _compile(schema_json: str) -> str:
    """The llguidance grammar (layout :data:`LAYOUT`) of a schema given as JSON text; a
    ``ConfigError`` that says what is wrong with the schema."""
    llg = _llguidance()
    try:
        grammar = _grammar(llg, schema_json)
    except ValueError as e:
        raise ConfigError(f"json_schema: {e}") from None
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise ConfigError(f"json_schema: {messages[0].splitlines()[0]}")
    return grammar


def _grammar(llg: Any, schema_json: str) -> str:
    """The schema's grammar: the JSON schema alone, or with :data:`AFTER` or
    :data:`REPEAT` the Lark grammar of the document followed by the AFTER text, repeated
    with the REPEAT text between."""
    schema = json.loads(schema_json)
    words = ({k: schema.pop(k) for k in (AFTER, REPEAT) if k in schema}
             if isinstance(schema, dict) else {})
    if not words:
        return llg.LLMatcher.grammar_from_json_schema(schema_json, defaults=LAYOUT)
    for key, text in words.items():
        if not isinstance(text, str):
            raise ValueError(f"{key} must be a string, got {text!r}")
    schema["x-guidance"] = {**LAYOUT, **schema.get("x-guidance", {})}
    item = f"%json{json.dumps(schema)}{_literal(words.get(AFTER, ''))}"
    if REPEAT not in words:
        return llg.LLMatcher.grammar_from_lark(f"start: {item}")
    return llg.LLMatcher.grammar_from_lark(
        f"start: item ({_literal(words[REPEAT])} item)*\nitem: {item}")


def _literal(text: str) -> str:
    """``text`` as a Lark string literal after a space; nothing for empty text."""
    return f" {json.dumps(text)}" if text else ""


def compile_schema(schema: Any) -> str:
    """The grammar of ``schema`` (a dict); ``ConfigError`` when it is not a valid schema.
    Compiled grammars are cached by the schema's JSON text (key order kept: it is the
    order of the properties in the output)."""
    if not isinstance(schema, dict):
        raise ConfigError(f"json_schema must be a JSON schema (a dict), got {schema!r}")
    try:
        text = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"json_schema must be JSON: {e}") from None
    return _compile(text)


def _ll_tokenizer(tokenizer: Any, vocab_size: int) -> Any:
    """llguidance's view of ``tokenizer`` (its ``tokenizer.json``), cached per tokenizer."""
    hf = getattr(tokenizer, "hf", None)
    if hf is None:
        raise ConfigError("json_schema needs a Hugging Face tokenizers tokenizer "
                          f"(tokenizer.json), got {type(tokenizer).__name__}")
    per_vocab = _TOKENIZERS.setdefault(tokenizer, {})
    if vocab_size not in per_vocab:
        try:
            per_vocab[vocab_size] = _llguidance().LLTokenizer(
                hf.to_str(), n_vocab=vocab_size, eos_token=getattr(tokenizer, "eos_id", None))
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"json_schema: llguidance cannot read this tokenizer: {e}"
                              ) from None
    return per_vocab[vocab_size]


class JsonConstraint:
    """One sequence's grammar state (module docstring): :meth:`allowed` gives the tokens
    it may produce next, :meth:`advance` takes the token it produced.

    ``end_ids`` are the ids that end the sequence (at least one). ``vocab_size`` is the
    model's (it may exceed the tokenizer's; the extra ids are never allowed).
    """

    def __init__(self, schema: dict, tokenizer: Any, vocab_size: int, end_ids: Iterable[int]):
        self.end_ids = sorted(set(end_ids))
        if not self.end_ids:
            raise ConfigError("json_schema needs an end-of-sequence token to end the "
                              "document (the tokenizer has none, or it is ignored)")
        lltok = _ll_tokenizer(tokenizer, vocab_size)
        self.matcher = _llguidance().LLMatcher(lltok, compile_schema(schema))
        if self.matcher.is_error():
            raise ConfigError(f"json_schema: {self.matcher.get_error()}")
        self.vocab_size = vocab_size
        self._grammar_eos = list(lltok.eos_tokens)

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens that keep the text a prefix of a valid document, and
        the end ids when it is a whole one (only them once nothing can follow)."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        if not self.matcher.is_stopped():
            words = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
            bits = np.unpackbits(words, bitorder="little")[:self.vocab_size]
            mask[:len(bits)] = torch.from_numpy(bits.astype(bool))
            mask[self._grammar_eos] = False  # llguidance's own end: ours are end_ids
            if not self.matcher.is_accepting():
                return mask
        mask[self.end_ids] = True
        return mask

    def advance(self, token: int) -> None:
        """Take the sampled ``token`` (an end id changes nothing: the sequence ends)."""
        if token in self.end_ids:
            return
        if not self.matcher.consume_token(token):
            raise LmforgeError(f"json_schema: token {token} does not fit the grammar: "
                               f"{self.matcher.get_error()}")

