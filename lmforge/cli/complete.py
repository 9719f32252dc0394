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
):
    """Complete line N of a Python file. Without --fim the cursor is at the start of
    line N, after lines 1..N-1, and the model's line N is printed. With --fim, line N is
    the middle between the lines before it (prefix) and after it (suffix), and the
    model's middle is printed (possibly several lines)."""
    from ..code.complete import complete_line, read_source, split_at_line
    from ..hub import load_pretrained

    text = read_source(file)
    split_at_line(text, line, file)  # a bad line is reported before the model loads
    model, tok = load_pretrained(run, require_tokenizer=True)
    _echo(complete_line(model, tok, text, line, fim=fim, max_new_tokens=max_new_tokens,
                        temperature=temperature, seed=seed, file=file, name=run))
