"""The :class:`Tokenizer` wrapper around a Hugging Face ``tokenizers.Tokenizer``.

One class serves every tokenizer lmforge trains (``char``, byte-level ``bpe``,
``wordpiece``) and any ``tokenizer.json`` from a Hugging Face model folder (``hf``). It
adds what the raw library leaves to the caller: named special-token roles (``bos_id``,
``eos_id``, ``pad_id``, ``unk_id``, ``mask_id``), encoding that never adds special tokens
and treats special-token strings in the text as plain text (so byte-level BPE round-trips
*every* string), and an HF-compatible folder format::

    folder/tokenizer.json          # the Hugging Face tokenizers file
    folder/tokenizer_config.json   # {"bos_token": "<|bos|>", ..., "lmforge_kind": "bpe"}

The files may be encrypted at rest: they are read (and, with an active key, written)
through :mod:`lmforge.privacy.encrypted_io`, never as plaintext on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from ..errors import CheckpointError, DataError
from ..io import ensure_writable_dir
from ..privacy.encrypted_io import read_bytes, read_json, write_json, write_text

#: The special-token roles, in the order of their ids for the ``char`` and ``bpe`` kinds.
SPECIAL_ROLES: tuple[str, ...] = ("bos", "eos", "pad", "unk", "mask")

#: Default special tokens per kind, role -> token, in id order (ids 0-4).
DEFAULT_SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "char": {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "unk": "<|unk|>",
             "mask": "<|mask|>"},
    "bpe": {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "unk": "<|unk|>",
            "mask": "<|mask|>"},
    # BERT's relative order: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4.
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]",
                  "mask": "[MASK]"},
}

KINDS = ("char", "bpe", "wordpiece", "hf")

# Names used to find roles in a tokenizer that comes without a tokenizer_config.json.
_ROLE_GUESSES: dict[str, tuple[str, ...]] = {
    "bos": ("<|bos|>", "<s>", "[CLS]", "<|startoftext|>", "<bos>", "<|begin_of_text|>",
            "<|im_start|>"),
    "eos": ("<|eos|>", "</s>", "[SEP]", "<|endoftext|>", "<eos>", "<|end_of_text|>",
            "<|im_end|>"),
    "pad": ("<|pad|>", "<pad>", "[PAD]"),
    "unk": ("<|unk|>", "<unk>", "[UNK]"),
    "mask": ("<|mask|>", "<mask>", "[MASK]"),
}
# tokenizer_config.json keys per role, in order of preference (BERT has cls/sep only).
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "bos": ("bos_token", "cls_token"),
    "eos": ("eos_token", "sep_token"),
    "pad": ("pad_token",),
    "unk": ("unk_token",),
    "mask": ("mask_token",),
}

_CJK = (r"\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
        r"\U00020000-\U0002fa1f")
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")


def _token_content(value: Any) -> str | None:
    """A special token from a config value: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None




def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise DataError(f"Tokenizer.encode: text must be a str, got {type(text).__name__}")


class Tokenizer:
    """Encode text to ids and back; see the module docstring.

    Build one with :meth:`load`, :func:`~lmforge.tokenize.train_tokenizer` or
    :meth:`from_hf` (an existing ``tokenizers.Tokenizer``).
    """

    def __init__(self, hf: HFTokenizer, kind: str = "hf",
                 special_tokens: dict[str, str | None] | None = None,
                 config: dict | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self._tk = hf
        # encode() returns a text's own ids: padding and truncation stored in a checkpoint's
        # tokenizer.json (MiniLM pads to 128) are the caller's business, not the tokenizer's.
        self._tk.no_padding()
        self._tk.no_truncation()
        self._tk.encode_special_tokens = True  # special-token strings in text are text
        self._tk_special: HFTokenizer | None = None  # lazily: one that matches them
        self.kind = kind
        self._config = dict(config or {})
        vocab = hf.get_vocab(with_added_tokens=True)
        self._vocab_size = max(vocab.values(), default=-1) + 1
        roles = special_tokens if special_tokens is not None else self._guess_roles(vocab)
        self.special_tokens: dict[str, str | None] = {}
        for role in SPECIAL_ROLES:
            tok = roles.get(role)
            self.special_tokens[role] = tok if tok is not None and tok in vocab else None
        specials = {i for i, t in hf.get_added_tokens_decoder().items() if t.special}
        specials |= {vocab[t] for t in self.special_tokens.values() if t is not None}
        self._special_ids = frozenset(specials)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_hf(cls, hf: HFTokenizer, kind: str = "hf",
                special_tokens: dict[str, str | None] | None = None) -> Tokenizer:
        """Wrap a copy of a ``tokenizers.Tokenizer``; roles are guessed from common names
        (``<s>``, ``[CLS]``, ``<|endoftext|>``, ...) when not given as ``{role: token}``."""
        return cls(HFTokenizer.from_str(hf.to_str()), kind, special_tokens)

    @staticmethod
    def _guess_roles(vocab: dict[str, int]) -> dict[str, str | None]:
        roles: dict[str, str | None] = {}
        for role, names in _ROLE_GUESSES.items():
            roles[role] = next((n for n in names if n in vocab), None)
        return roles

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load ``tokenizer.json`` (a file, or a folder holding one).

        In a folder -- an lmforge folder or any Hugging Face model folder -- the roles come
        from ``tokenizer_config.json`` and ``special_tokens_map.json`` when present
        (``bos_token``, ``eos_token``, ``pad_token``, ``unk_token``, ``mask_token``; BERT's
        ``cls_token``/``sep_token`` stand in for bos/eos), else from common token names.
        A folder with only a WordPiece ``vocab.txt`` (older BERT checkpoints) also loads.
        """
        p = Path(path).expanduser()
        if p.is_dir():
            folder, file = p, p / "tokenizer.json"
        elif p.is_file():
            folder, file = p.parent, p
        else:
            raise DataError(f"tokenizer not found: {p}")
        configs: dict[str, Any] = {}
        if file.name == "tokenizer.json" or p.is_dir():
            for name in ("special_tokens_map.json", "tokenizer_config.json"):
                if (folder / name).is_file():
                    configs.update(read_json(folder / name))
        if file.is_file():
            raw = read_bytes(file)
            try:
                hf = HFTokenizer.from_str(raw.decode("utf-8"))
            except Exception as e:  # the Rust side raises a plain Exception
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise CheckpointError(f"{file} is not a valid tokenizer.json: {msg}") from None
        elif (folder / "vocab.txt").is_file():
            hf = _from_vocab_txt(folder / "vocab.txt", configs)
        else:
            raise DataError(f"{folder} has no tokenizer.json (nor a WordPiece vocab.txt); "
                            "give a tokenizer.json file or a model folder that has one")
        kind = configs.get("lmforge_kind", "hf")
        if kind not in KINDS:
            kind = "hf"
        roles = None
        if any(k in configs for keys in _CONFIG_KEYS.values() for k in keys):
            vocab = hf.get_vocab(with_added_tokens=True)
            roles = cls._guess_roles(vocab)
            for role, keys in _CONFIG_KEYS.items():
                for key in keys:
                    if key in configs:
                        roles[role] = _token_content(configs[key])
                        break
        return cls(hf, kind, roles, config=configs)

    # ------------------------------------------------------------------ encoding

    def _matcher(self, allow_special: bool) -> HFTokenizer:
        if not allow_special:
            return self._tk
        if self._tk_special is None:
            self._tk_special = HFTokenizer.from_str(self._tk.to_str())
            self._tk_special.encode_special_tokens = False
        return self._tk_special

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``; special tokens are never added.

        A special-token string inside ``text`` (``"<|eos|>"``) is encoded as ordinary text
        unless ``allow_special=True``, in which case it becomes the special id.
        """
        _check_text(text)
        return self._matcher(allow_special).encode(text, add_special_tokens=False).ids

    def encode_offsets(self, text: str, *, allow_special: bool = False
                       ) -> tuple[list[int], list[tuple[int, int]]]:
        """:meth:`encode`, with each token's ``[start, end)`` characters in ``text`` (the
        bytes of one character split over several tokens all name that character)."""
        _check_text(text)
        enc = self._matcher(allow_special).encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def encode_batch(self, texts: Sequence[str], *,
                     allow_special: bool = False) -> list[list[int]]:
        """:meth:`encode` for many texts at once (parallel in Rust)."""
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(f"Tokenizer.encode_batch: texts[{bad}] must be a str, got "
                            f"{type(texts[bad]).__name__}")
        tk = self._matcher(allow_special)
        encs = tk.encode_batch_fast(texts, add_special_tokens=False)
        return [e.ids for e in encs]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The text of ``ids`` (special tokens dropped unless ``skip_special_tokens=False``)."""
        if isinstance(ids, (str, bytes)):
            raise DataError(f"Tokenizer.decode: ids must be a sequence of ints, got "
                            f"{type(ids).__name__}")
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self._vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self._vocab_size)
            raise DataError(f"Tokenizer.decode: id {bad} is outside the vocabulary "
                            f"[0, {self._vocab_size})")
        text = self._tk.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.kind == "wordpiece" and " " in text:
            # The BERT normaliser splits every CJK character off, so the decoder joins them
            # with spaces; Chinese reads without them.
            text = _CJK_SPACE.sub("", text)
        return text

    def decode_batch(self, batch: Iterable[Iterable[int]],
                     skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """1 + the largest id, special tokens included (the embedding table size)."""
        return self._vocab_size

    def __len__(self) -> int:
        return self._vocab_size

    def _role_id(self, role: str) -> int | None:
        tok = self.special_tokens.get(role)
        return None if tok is None else self._tk.token_to_id(tok)

    @property
    def bos_id(self) -> int | None:
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._role_id("eos")

    @property
    def pad_id(self) -> int | None:
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        return self._role_id("unk")

    @property
    def mask_id(self) -> int | None:
        return self._role_id("mask")

    @property
    def special_ids(self) -> set[int]:
        """Ids of every special token (the roles and any other special added token)."""
        return set(self._special_ids)

    def token_to_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tk.id_to_token(int(i))

    def get_vocab(self) -> dict[str, int]:
        return self._tk.get_vocab(with_added_tokens=True)

    @property
    def hf(self) -> HFTokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tk

    # ------------------------------------------------------------------ saving

    def config(self) -> dict:
        """The ``tokenizer_config.json`` written by :meth:`save`."""
        cfg = dict(self._config)
        for role in SPECIAL_ROLES:
            key = _CONFIG_KEYS[role][0]
            tok = self.special_tokens[role]
            if tok is not None:
                cfg[key] = tok
            else:
                cfg.pop(key, None)
        if self.kind == "wordpiece":
            cfg["cls_token"] = self.special_tokens["bos"]
            cfg["sep_token"] = self.special_tokens["eos"]
        cfg.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        if self.kind in ("char", "bpe"):
            cfg.setdefault("clean_up_tokenization_spaces", False)
        cfg["lmforge_kind"] = self.kind
        return cfg

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``folder/tokenizer.json`` and ``folder/tokenizer_config.json`` atomically
        (encrypted when a key is active: :func:`lmforge.privacy.encrypted_io.using_key`)."""
        folder = ensure_writable_dir(folder)
        write_text(folder / "tokenizer.json", self._tk.to_str(pretty=True) + "\n")
        write_json(folder / "tokenizer_config.json", self.config())

    def __repr__(self) -> str:
        roles = ", ".join(f"{r}={self._role_id(r)}" for r in SPECIAL_ROLES
                          if self.special_tokens[r] is not None)
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, {roles})"

    def __getstate__(self) -> dict:
        return {"json": self._tk.to_str(), "kind": self.kind,
                "special_tokens": self.special_tokens, "config": self._config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(HFTokenizer.from_str(state["json"]), state["kind"],
                      state["special_tokens"], state["config"])


def text_lines(text: str) -> list[str]:
    """The lines of a vocabulary file as the Rust side of ``tokenizers`` reads them
    (split at ``\\n``, a final newline ends the last line, ``\\r\\n`` accepted)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _from_vocab_txt(vocab: Path, configs: dict) -> HFTokenizer:
    """WordPiece from ``vocab.txt``: token i on line i (trailing whitespace dropped), as
    ``WordPiece.from_file`` reads it, but from memory (the file may be encrypted)."""
    from tokenizers.implementations import BertWordPieceTokenizer

    raw = read_bytes(vocab)
    try:
        table = {line.rstrip(): i for i, line in enumerate(text_lines(raw.decode("utf-8")))}
        impl = BertWordPieceTokenizer(table, lowercase=bool(configs.get("do_lower_case",
                                                                        True)))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{vocab} is not a valid WordPiece vocabulary: {msg}") from None
    return impl._tokenizer
