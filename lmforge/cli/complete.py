"""CLI verb ``lmforge complete RUN --file F.py --line N``: code completion at a cursor
(:mod:`lmforge.code.complete`)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _echo, app


@app.command(epilog="Example: lmforge complete runs/code-stdlib --file app.py --line 12 "
                    "--fim")
def complete(
    run: Annotated[str, typer.Argument(help="A code run (lmforge finetune code-stdlib) or "
                                       "model folder.", metavar="RUN")],
    file: Annotated[str, typer.Option(help="The Python file (UTF-8).")],
    line: Annotated[int, typer.Option(help="The line, counted from 1.")],
    fim: Annotated[bool, typer.Option(help="Fill in the middle: line N is rewritten "
                                      "from the code before and after it.")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest completion, in "
                                                "tokens.")] = 64,
    temperature: Annotated[float, typer.Option(min=0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (temperature > 0).")] = None,
    block: Annotated[bool, typer.Option(help="Write the rest of the block from line N, "
                                        "to where it dedents, by beam search.")] = False,
    beams: Annotated[int, typer.Option(min=1, help="Beams for --block (1: greedy).")] = 4,
    no_repeat_ngram_size: Annotated[int, typer.Option(
        min=0, help="Never repeat an n-gram of this many tokens, the code before the "
        "cursor included (0: off; the code-stdlib recipe measures with 10).")] = 0,
):
    """Complete line N of a Python file. Without --fim the cursor is at the start of
    line N, after lines 1..N-1, and the model's line N is printed. With --fim, line N is
    the middle between the lines before it (prefix) and after it (suffix), and the
    model's middle is printed (possibly several lines). With --block the model writes
    the rest of the block from line N (a function body after its def and docstring) and
    every line of it is printed."""
    from ..code.complete import complete_block, complete_line, read_source, split_at_line
    from ..errors import ConfigError
    from ..hub import load_pretrained

    if block and (fim or temperature > 0):
        raise ConfigError("--block decodes by beam search from the code before the "
                          "cursor: drop --fim and --temperature")
    text = read_source(file)
    split_at_line(text, line, file)  # a bad line is reported before the model loads
    model, tok = load_pretrained(run, require_tokenizer=True)
    if block:
        _echo(complete_block(model, tok, text, line, beams=beams,
                             max_new_tokens=max_new_tokens,
                             no_repeat_ngram_size=no_repeat_ngram_size, file=file).rstrip("\n"))
        return
    _echo(complete_line(model, tok, text, line, fim=fim, max_new_tokens=max_new_tokens,
                        temperature=temperature, seed=seed, file=file, name=run,
                        no_repeat_ngram_size=no_repeat_ngram_size))
