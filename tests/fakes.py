"""Test doubles shared by several test files."""


class ByteTokenizer:
    """A byte-level tokenizer with the lmforge tokenizer interface (3 specials + bytes)."""

    pad_id, bos_id, eos_id = 0, 1, 2
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")
