"""CLI verb ``lmforge chat RUN``: a terminal conversation (:mod:`lmforge.chat.repl`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from . import app
from .key_options import with_key


def _lines(prompt: str) -> Iterator[str]:
    """User lines: ``input()`` with a prompt on a terminal, plain lines from a pipe."""
    if sys.stdin.isatty():
        while True:
            try:
                yield input(prompt)
            except EOFError:
                return
    else:
        yield from sys.stdin


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@app.command(epilog="Example: lmforge chat runs/chat-world --system 'Be brief.' "
                    "--temperature 0")
@with_key
def chat(
    model: Annotated[str, typer.Argument(help="A run folder or a model folder.",
                                         metavar="RUN_OR_DIR")],
    system: Annotated[str | None, typer.Option(help="The system message.")] = None,
    template: Annotated[Path | None, typer.Option(
        help="A chat template file (.jinja) instead of the model's own.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens.")] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.7,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
):
    """Talk to a model in the terminal; the reply streams as it is generated. Commands:
    /reset, /system TEXT, /save FILE, /help, /exit."""
    from ..chat import ChatTemplate, load_chat_template
    from ..chat.generate import check_causal
    from ..chat.repl import ChatSession, run_repl
    from ..chat.template import read_chat_template
    from ..errors import DataError
    from ..generate import GenerationConfig
    from ..hub import load_pretrained, resolve_model_dir

    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, seed=seed)
    if template is not None:
        tpl = read_chat_template(template)
    else:
        tpl = (load_chat_template(resolve_model_dir(model))
               or (load_chat_template(model) if Path(model).is_dir() else None)
               or ChatTemplate.default())
    m, tok = load_pretrained(model, require_tokenizer=True)
    check_causal(m, model)
    if max_new_tokens >= m.config.max_seq_len:
        raise DataError(f"--max-new-tokens {max_new_tokens} leaves no room for the "
                        f"conversation in the model's {m.config.max_seq_len} positions")
    if sys.stdin.isatty():
        typer.echo(f"chatting with {model} (template {tpl.source}); /help for commands")
    run_repl(ChatSession(m, tok, tpl, config, system), _lines("> "), _write)
