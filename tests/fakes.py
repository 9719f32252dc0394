"""Test doubles and helpers shared by several test files."""

import pytest

from lmforge.cli import main


def run_cli(args, capsys=None):
    """Run ``lmforge ARGS`` in-process: ``(exit code, stdout, stderr)`` (the outputs are
    empty strings without ``capsys``)."""
    with pytest.raises(SystemExit) as e:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr() if capsys is not None else None
    return e.value.code, out.out if out else "", out.err if out else ""


class ByteTokenizer:
    """A byte-level tokenizer with the lmforge tokenizer interface (3 specials + bytes)."""

    pad_id, bos_id, eos_id = 0, 1, 2
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")
