r"""Code-completion metrics on held-out files (the ``test`` split).

**Next-line exact match** (:func:`next_line_match`). ``lines`` lines are drawn (with
``random.Random(seed)``) from the non-blank lines of the test files that the model can
write within ``max_new_tokens`` (the line and the whitespace before it,
:mod:`lmforge.code.complete`). The cursor is at the start of the line; the model's line
(:func:`~lmforge.code.complete.model_lines`) must equal the true one character for
character, indentation and trailing spaces included (whitespace-exact), the newline
left out. With fill-in-the-middle (a model whose tokenizer has the sentinels) the same
lines are asked again as middles, with the code after them as the suffix, and the first
line of the model's middle is compared the same way.

**Function bodies** (:func:`body_parse`). Candidates are the functions of the test files
(``def`` and ``async def``, methods and nested ones included, found by :mod:`ast`) whose
body has 1 to ``max_body_lines`` lines. With ``docstring`` (default) the docstring is
given and the body is what follows it (functions with nothing after their docstring are
skipped); otherwise the model writes the docstring too. The prompt is the file up to the
body's first line. The model's body is its lines up to the first non-blank line indented
no deeper than the ``def`` (:func:`cut_body`), or up to ``<eos>``, or as far as
``max_new_tokens`` reached (counted as ``hit_max_new_tokens``). It *parses* when
``ast.parse`` accepts the ``def`` line(s) (and docstring) followed by it, dedented with
``textwrap.dedent``. A candidate is kept only when its true body passes the same
procedure (the cut finds exactly it and it parses), so the ceiling is 1.0; ``bodies``
candidates are drawn with ``random.Random(seed)``. An empty body does not parse (a
docstring alone would). ``exact`` is the share of bodies equal to the true one
(trailing whitespace aside). Bodies are decoded greedily, or (``beams > 1``) by beam
search in which beginning the dedented line ends a beam as ``eos`` does
(:class:`~lmforge.code.complete.BodyEnd`), a dedent before any line not allowed.

**Perplexity per token** (:func:`perplexity`) of each test file as ``[bos] tokens
[eos]`` (:func:`lmforge.eval.lm.perplexity_of_texts`, sliding windows of the model's
context moving half a window), beside an interpolated modified Kneser-Ney n-gram model
(:class:`~lmforge.models.ngram_model.NGramModel`) counted on the training files' tokens
of the same tokenizer and scored on the same targets, so the two are comparable.

The model runs in the training precision (bf16 autocast where ``train.precision``
resolves to it, as ``auto`` does on a CPU whose bf16 is measurably faster; else fp32).
Lines are decoded greedily; ``no_repeat_ngram_size`` (recipe: ``evaluate``) may ban
repeated n-grams, against the loops small models fall into.
"""

from __future__ import annotations

import ast
import math
import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .complete import (
    BodyEnd,
    cut_body,
    left_prompt,
    middle_prompt,
    model_lines,
    room_for,
    source_lines,
)
from .data import CodeFile
from .fim import FimIds


def _decode(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int,
            batch_size: int, **options: Any) -> list[Any]:
    """Greedy completions, or beam search with ``num_beams``; ``options`` are further
    :class:`~lmforge.generate.GenerationConfig` fields (``autocast``,
    ``no_repeat_ngram_size``) and ``ends`` of :func:`~lmforge.generate.complete_ids`."""
    from ..generate import complete_ids

    return complete_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                        temperature=0, batch_size=batch_size, **options)


# ----------------------------------------------------------------------------- next line

@dataclass(frozen=True)
class LineCase:
    """A test line: the file's text before it, the line (no newline), the text after."""

    file: str
    line: int
    before: str
    target: str
    after: str


def line_cases(files: Sequence[CodeFile], tokenizer: Any, n: int, max_new_tokens: int,
               seed: int) -> list[LineCase]:
    """The lines of the module docstring, in file and line order."""
    pool = []
    for f in files:
        lines = source_lines(f.text)
        for i, line in enumerate(lines):
            if line.strip():
                pool.append((f, lines, i))
    rng, out = random.Random(seed), []
    for f, lines, i in rng.sample(pool, len(pool)):
        before = "".join(lines[:i])
        written = before[len(before.rstrip()):] + lines[i]
        if len(tokenizer.encode(written)) >= max_new_tokens:
            continue
        out.append(LineCase(f.name, i + 1, before, lines[i].rstrip("\n"),
                            "".join(lines[i + 1:])))
        if len(out) == n:
            break
    return sorted(out, key=lambda c: (c.file, c.line))


def next_line_match(model: Any, tokenizer: Any, cases: Sequence[LineCase],
                    max_new_tokens: int, batch_size: int, fim: FimIds | None = None,
                    **options: Any) -> tuple[dict, list[dict]]:
    """Exact match of the model's line N (and of its FIM middle when ``fim`` is given);
    returns the figures and one record per case. ``options``: see :func:`_decode`."""
    room = room_for(model, max_new_tokens)
    out = _decode(model, tokenizer, [left_prompt(tokenizer, c.before, room) for c in cases],
                  max_new_tokens, batch_size, **options)
    got = [(model_lines(c.before, o.text) or [""])[0].rstrip("\n")
           for c, o in zip(cases, out, strict=True)]
    records = [{"file": c.file, "line": c.line, "true": c.target, "model": g}
               for c, g in zip(cases, got, strict=True)]
    n = max(1, len(cases))
    figures = {"n": len(cases),
               "exact_match": round(sum(r["true"] == r["model"] for r in records) / n, 4)}
    if fim is not None:
        prompts = [middle_prompt(tokenizer, fim, c.before, c.after, room) for c in cases]
        out = _decode(model, tokenizer, prompts, max_new_tokens, batch_size, **options)
        for r, o in zip(records, out, strict=True):
            r["fim"] = o.text.split("\n", 1)[0]
        figures["fim_exact_match"] = round(
            sum(r["true"] == r["fim"] for r in records) / n, 4)
    return figures, records


# ----------------------------------------------------------------------------- bodies

@dataclass(frozen=True)
class BodyCase:
    """A test function: the text before its body, its header (``def`` line(s), and the
    docstring when given), its true body, and the ``def``'s indentation."""

    file: str
    name: str
    line: int
    before: str
    header: str
    body: str
    indent: int


def parses(header: str, body: str) -> bool:
    """Whether ``ast.parse`` accepts ``header + body`` dedented."""
    try:
        ast.parse(textwrap.dedent(header + body))
    except (SyntaxError, ValueError):
        return False
    return True


def _first_line(stmt: ast.stmt) -> int:
    return min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])


def file_bodies(f: CodeFile, docstring: bool, max_body_lines: int) -> list[BodyCase]:
    """The candidate functions of one file (module docstring)."""
    try:
        tree = ast.parse(f.text)
    except (SyntaxError, ValueError):
        return []
    lines = source_lines(f.text)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        skip = 1 if docstring and ast.get_docstring(node, clean=False) is not None else 0
        if len(node.body) <= skip:
            continue
        first = node.body[skip]
        start = _first_line(first)  # 1-based line of the body's first statement
        line = lines[start - 1]
        if start <= node.lineno or line[:first.col_offset].strip() \
                or not 1 <= node.end_lineno - start + 1 <= max_body_lines:
            continue  # a body on the def's line, or after a ';', or too long
        header = "".join(lines[node.lineno - 1:start - 1])
        body = "".join(lines[start - 1:node.end_lineno])
        found, _ = cut_body(lines[start - 1:], node.col_offset)
        if found.rstrip() != body.rstrip() or not parses(header, body):
            continue  # the procedure cannot recover the true body
        out.append(BodyCase(f.name, node.name, start, "".join(lines[:start - 1]), header,
                            body, node.col_offset))
    return sorted(out, key=lambda c: c.line)


def body_cases(files: Sequence[CodeFile], n: int, docstring: bool, max_body_lines: int,
               seed: int) -> list[BodyCase]:
    pool = [c for f in files for c in file_bodies(f, docstring, max_body_lines)]
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))),
                  key=lambda c: (c.file, c.line))


def _nonblank_lines(body: str) -> int:
    return sum(bool(line.strip()) for line in body.splitlines())


def body_parse(model: Any, tokenizer: Any, cases: Sequence[BodyCase], max_new_tokens: int,
               batch_size: int, beams: int = 1, **options: Any) -> tuple[dict, list[dict]]:
    """The share of generated bodies that parse (of all, and of those that ended by a
    dedent or ``<eos>``), and one record per case. ``beams > 1``: beam search in which
    :class:`BodyEnd` ends a hypothesis; else greedy. ``options``: see :func:`_decode`."""
    room = room_for(model, max_new_tokens)
    prompts = [left_prompt(tokenizer, c.before, room) for c in cases]
    if beams > 1:
        out = _decode(model, tokenizer, prompts, max_new_tokens, batch_size, num_beams=beams,
                      ends=[BodyEnd(tokenizer, c.indent) for c in cases], **options)
    else:
        out = _decode(model, tokenizer, prompts, max_new_tokens, batch_size, **options)
    records = []
    for c, o in zip(cases, out, strict=True):
        body, dedent = cut_body(model_lines(c.before, o.text), c.indent)
        records.append({"file": c.file, "function": c.name, "line": c.line,
                        "true": c.body, "model": body,
                        "parses": bool(body.strip()) and parses(c.header, body),
                        "exact": body.rstrip() == c.body.rstrip(),
                        "hit_max_new_tokens": not dedent and o.finish_reason == "length"})
    n = max(1, len(records))
    ended = [r["parses"] for r in records if not r["hit_max_new_tokens"]]
    return {"n": len(records),
            "parse": round(sum(r["parses"] for r in records) / n, 4),
            "exact": round(sum(r["exact"] for r in records) / n, 4),
            "hit_max_new_tokens": len(records) - len(ended),
            "parse_when_ended": round(sum(ended) / max(1, len(ended)), 4),
            "lines_mean": round(sum(_nonblank_lines(r["model"]) for r in records) / n, 2),
            "true_lines_mean": round(sum(_nonblank_lines(r["true"]) for r in records) / n, 2),
            "one_line": round(sum(_nonblank_lines(r["model"]) == 1 for r in records) / n, 4),
            "true_one_line": round(sum(_nonblank_lines(r["true"]) == 1 for r in records) / n, 4),
            "decoding": f"beam search ({beams})" if beams > 1 else "greedy",
            "ceiling": 1.0}, records


# ----------------------------------------------------------------------------- perplexity

def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int,
               autocast: torch.dtype | None = None) -> dict:
    """The model's perplexity per token on ``texts`` (module docstring)."""
    from ..eval.lm import perplexity_of_texts

    m = perplexity_of_texts(model, tokenizer, list(texts), batch_size=batch_size,
                            autocast_dtype=autocast)
    return {"perplexity": round(m["perplexity"], 4), "tokens": int(m["tokens"]),
            "bits_per_char": round(m["bits_per_char"], 4)}


def ngram_perplexity(tokenizer: Any, train_docs: Sequence[Sequence[int]],
                     texts: Sequence[str], order: int) -> dict:
    """An order-``order`` Kneser-Ney model counted on ``train_docs`` (token ids of the
    training files), scored like :func:`perplexity` on ``texts``."""
    from ..models.ngram_model import NGramConfig, NGramModel

    cfg = NGramConfig(order=order, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                      bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    model = NGramModel.fit(cfg, train_docs)
    total, n, chars = 0.0, 0, 0
    for text in texts:
        lp, k = model.document_logprob(tokenizer.encode(text))
        total, n, chars = total + lp, n + k, chars + len(text)
    return {"order": order, "perplexity": round(math.exp(-total / n), 4), "tokens": n,
            "bits_per_char": round(-total / math.log(2) / chars, 4)}
