"""Completing code at a cursor: the prompts, cut to the model's context, and the rules of
``lmforge complete``.

**Lines.** A file's lines are its text split after each ``"\\n"`` (the last line may lack
one; form feeds and ``"\\r"`` are ordinary characters), numbered from 1.

**Plain completion** (:func:`left_prompt`): the cursor is at the start of line ``N``,
after lines ``1 .. N-1``. The prompt is ``<bos>`` and the last ``room - 1`` tokens
(``room = max_seq_len - max_new_tokens``) of that text *without its trailing whitespace*
(the last newline, blank lines): the model writes those itself. Byte-level BPE keeps a
newline and the next line's indentation in one token (``"):"``, ``"\\n       "``,
``" return"``), so a prompt that ended in the newline would end on a token the model has
only ever seen before an unindented line. The completion is line ``N`` of the model's
text (the prompt's text followed by what it generates, lines counted as in the file;
:func:`model_lines`): the model must also reproduce the blank lines before it.

**A block** (:func:`complete_block`, ``lmforge complete --block``): the cursor is at
the start of line ``N`` as above, and the model writes the rest of the block: its lines
up to the first non-blank one indented at most ``indent`` columns (:func:`cut_body`),
where ``indent`` is that of the last non-blank line before ``N`` when it opens a block
(ends with ``:``), else one less (:func:`block_indent`). Decoding is beam search in
which that line ends a beam (:class:`BodyEnd`), as the function-body metric decodes.

**Fill in the middle** (:func:`middle_prompt`): line ``N`` is the middle, the lines
before it the prefix and the lines after it the suffix. The PSM prompt
(:func:`~lmforge.code.fim.fim_prompt`) gets ``room - 4`` tokens: the suffix keeps its
first ``min(len(s), budget // 2)`` tokens, the prefix its last ``budget - kept``. The
middle is the text generated before ``<eos>``; ``lmforge complete --fim`` prints all of
it (a model may write more than one line), the metrics keep its first line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .fim import FIM_TOKENS, FimIds, fim_prompt


def source_lines(text: str) -> list[str]:
    """The lines of ``text``, each with its ``"\\n"`` (module docstring)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def room_for(model: Any, max_new_tokens: int) -> int:
    """Prompt tokens that leave ``max_new_tokens`` positions free (at least 8)."""
    room = model.config.max_seq_len - max_new_tokens
    if room < 8:
        raise DataError(f"max_new_tokens={max_new_tokens} leaves no room for the code before "
                        f"the cursor in the model's {model.config.max_seq_len} positions")
    return room


def left_prompt(tokenizer: Any, before: str, room: int) -> list[int]:
    """``<bos>`` and the last ``room - 1`` tokens of ``before`` without its trailing
    whitespace (module docstring)."""
    ids = tokenizer.encode(before.rstrip())
    return [tokenizer.bos_id, *ids[max(0, len(ids) - (room - 1)):]]


def model_lines(before: str, generated: str) -> list[str]:
    """The lines the model wrote after ``before`` (lines ``N, N+1, ...`` of
    ``before.rstrip() + generated``), each with its newline."""
    return source_lines(before.rstrip() + generated)[len(source_lines(before)):]


def middle_prompt(tokenizer: Any, fim: FimIds, before: str, after: str, room: int
                  ) -> list[int]:
    """The PSM prompt for the text between ``before`` and ``after`` (module docstring)."""
    budget = room - 4
    suffix = tokenizer.encode(after)[:budget // 2]
    prefix = tokenizer.encode(before)
    prefix = prefix[max(0, len(prefix) - (budget - len(suffix))):]
    return fim_prompt(tokenizer, fim, prefix, suffix)


def indentation(line: str) -> int:
    """The columns of whitespace before a line's first character."""
    return len(line) - len(line.lstrip())


def cut_body(lines: Sequence[str], indent: int) -> tuple[str, bool]:
    """The lines before the first non-blank line indented at most ``indent`` columns,
    joined, and whether there was such a line (a dedent)."""
    for k, line in enumerate(lines):
        if line.strip() and indentation(line) <= indent:
            return "".join(lines[:k]), True
    return "".join(lines), False


class BodyEnd:
    """The end rule of a body in beam search (:mod:`lmforge.generate.beam`): the new
    tokens end the body once they begin a line whose first non-space character sits at
    column ``indent`` or less (the line :func:`cut_body` cuts at); such a line before any
    non-blank line of body is not allowed (``None``: a body has at least one line). The
    text before the first newline continues the prompt's last line."""

    def __init__(self, tokenizer: Any, indent: int):
        self.tokenizer, self.indent = tokenizer, indent

    def __call__(self, tokens: list[int]) -> bool | None:
        lines = self.tokenizer.decode(tokens).split("\n")
        last = lines[-1]
        if len(lines) < 2 or not last.strip() or indentation(last) > self.indent:
            return False
        return True if any(line.strip() for line in lines[1:-1]) else None


def block_indent(before: str) -> int:
    """The column a block completed after ``before`` ends at (module docstring); -1 when
    ``before`` has no non-blank line (the block is the rest of the file)."""
    lines = [line for line in source_lines(before) if line.strip()]
    if not lines:
        return -1
    last = lines[-1].rstrip()
    return indentation(last) - (0 if last.endswith(":") else 1)


def complete_block(model: Any, tokenizer: Any, text: str, line: int, *, beams: int = 4,
                   max_new_tokens: int = 160, no_repeat_ngram_size: int = 0,
                   file: str = "the file") -> str:
    """``lmforge complete --block``: the block the model writes from the start of line
    ``line`` (module docstring), by beam search with ``beams`` beams (1: greedy)."""
    from ..generate import complete_ids

    before, _, _ = split_at_line(text, line, file)
    indent = block_indent(before)
    prompt = left_prompt(tokenizer, before, room_for(model, max_new_tokens))
    ends = {"num_beams": beams, "ends": [BodyEnd(tokenizer, indent)]} if beams > 1 else {}
    out = complete_ids(model, tokenizer, [prompt], max_new_tokens=max_new_tokens,
                       temperature=0, no_repeat_ngram_size=no_repeat_ngram_size, **ends)[0]
    return cut_body(model_lines(before, out.text), indent)[0]


def require_fim(tokenizer: Any, name: str) -> FimIds:
    """The FIM sentinels of a model's tokenizer, or a one-line error."""
    fim = FimIds.of(tokenizer)
    if fim is None:
        raise DataError(f"{name}: the model was trained without fill-in-the-middle (its "
                        f"tokenizer has no {FIM_TOKENS[0]} token); drop --fim, or train "
                        "with data.fim_rate > 0")
    return fim


def read_source(path: str | Path) -> str:
    """The text of a UTF-8 source file, or a one-line :class:`DataError`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: " + ("is a folder, not a file" if p.is_dir()
                                       else "no such file"))
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start})") from None


def split_at_line(text: str, line: int, name: str) -> tuple[str, str, str]:
    """``(lines before, line N, lines after)``, or an error naming ``name`` and the line."""
    lines = source_lines(text)
    if line < 1:
        raise DataError(f"{name}: line {line} does not exist: lines are numbered from 1 "
                        f"({len(lines)} lines)")
    if line > len(lines):
        raise DataError(f"{name}: line {line} is beyond the end of the file "
                        f"({len(lines)} lines)")
    return "".join(lines[:line - 1]), lines[line - 1], "".join(lines[line:])


def complete_line(model: Any, tokenizer: Any, text: str, line: int, *, fim: bool = False,
                  max_new_tokens: int = 64, temperature: float = 0.0,
                  seed: int | None = None, file: str = "the file",
                  name: str = "the model", no_repeat_ngram_size: int = 0) -> str:
    """``lmforge complete``: line ``line`` of ``text`` (plain), or the middle that
    replaces it (``fim``), by the rules of the module docstring. ``file`` and ``name``
    (the model's) name them in errors."""
    from ..generate import complete_ids

    before, _, after = split_at_line(text, line, file)
    sentinels = require_fim(tokenizer, name) if fim else None
    room = room_for(model, max_new_tokens)
    prompt = middle_prompt(tokenizer, sentinels, before, after, room) \
        if sentinels is not None else left_prompt(tokenizer, before, room)
    out = complete_ids(model, tokenizer, [prompt], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed,
                       no_repeat_ngram_size=no_repeat_ngram_size)[0].text
    if fim:
        return out
    lines = model_lines(before, out)
    return lines[0].rstrip("\n") if lines else ""
