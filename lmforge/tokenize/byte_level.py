"""The alphabet of byte-level BPE (GPT-2): every byte written as one printable character.

Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the
other 68 bytes are mapped, in order, to the code points 256, 257, ... A token's string in
the vocabulary is its bytes in this alphabet.
"""

from __future__ import annotations

import functools


@functools.cache
def byte_decoder() -> dict[str, int]:
    """The byte each character of the alphabet stands for."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table
