r"""The span machinery of extractive question answering, as pure functions: long contexts
cut into overlapping windows with the gold answer's token positions, and start/end
logits turned back into answer text. No model is needed; this is what Hugging Face's
``run_qa.py`` (``prepare_train_features``) and ``utils_qa.py``
(``postprocess_qa_predictions``) do, written to be read.

Windows
-------
A model reads at most ``max_length`` tokens, so a question with :math:`q` tokens leaves
:math:`r = \mathrm{max\_length} - q - 3` for the context (three special tokens)::

    [CLS] question [SEP] context[s : s + r] [SEP]      token types 0 ... 0 1 ... 1

with :math:`s = 0, r - \mathrm{stride}, 2(r - \mathrm{stride}), \dots` until a window
reaches the end of the context: consecutive windows share ``stride`` tokens, so an answer
cut by one window's edge is whole in the next. These are the windows (and token ids,
token types, offsets) of a Hugging Face fast tokenizer called with
``truncation="only_second", return_overflowing_tokens=True, stride=stride`` (a test
checks). Each window keeps, per token, the ``(start, end)`` characters of the context it
covers, ``None`` outside the context (the question and the special tokens).

The gold answer, characters :math:`[a, b)` of the context, is labelled in a window that
holds it whole (its first context token starts at or before :math:`a`, its last ends at
or after :math:`b`): the start position is the last context token starting at or before
:math:`a`, the end position the first context token ending at or after :math:`b`
(when the answer cuts a token, the whole token is in the span). Elsewhere, and for
an impossible question, both positions are 0, the ``[CLS]`` token: "no answer here".
(HF's loop differs in one edge case: an answer starting in a window's last context
token gets the ``[SEP]`` position there, as its start search runs on into ``[SEP]``.)

Post-processing
---------------
For each example, over all its windows: the ``n_best`` highest start logits and the
``n_best`` highest end logits of each window (ties: the lower position first) give the
candidate pairs :math:`(i, j)` with both tokens in the context, :math:`j \ge i` and
:math:`j - i + 1 \le` ``max_answer_length``; a pair scores :math:`s_i + e_j` and its
text is ``context[offsets[i][0]:offsets[j][1]]``. The ``n_best`` best candidates of the
example are kept (a span seen in two overlapping windows may appear twice, as in HF).
The null score is :math:`\min_w (s^w_0 + e^w_0)` over the windows (each window must
"want" the ``[CLS]`` for no answer to win). With ``with_null`` (SQuAD v2.0), the null
candidate (text ``""``) joins the n-best list, and the prediction is ``""`` when
:math:`\text{null} - \text{best span score} > ` ``null_threshold``. Each n-best entry
gets the softmax of its score over the list. Logits past a window's tokens (padding)
are ignored (HF lets them take top-n slots). An example with no candidate span predicts
``""`` (HF writes ``"empty"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from .encode import _encodings, _specials

__all__ = ["QAWindow", "QAPrediction", "make_windows", "encode_qa", "postprocess_qa"]

Offset = tuple[int, int]


@dataclass
class QAWindow:
    """One model input: ``[CLS] question [SEP] context chunk [SEP]``."""

    example: int                      # index of the example (record) it comes from
    input_ids: list[int]
    token_type_ids: list[int]         # 0 for [CLS] question [SEP], 1 for the chunk + [SEP]
    offsets: list[Offset | None]      # context characters per token; None off the context
    start_position: int = 0           # gold answer's first token; 0 ([CLS]) if not here
    end_position: int = 0             # gold answer's last token (inclusive); 0 if not here


@dataclass
class QAPrediction:
    """The answer of one example: its ``text`` (``""``: no answer), the n-best list
    (``{"text", "start", "end", "score", "start_logit", "end_logit", "probability"}``,
    ``start``/``end`` in characters, ``None`` for the null candidate) and, with the null
    candidate, ``score_diff`` = null score - best span score (None without a span)."""

    text: str
    nbest: list[dict] = field(default_factory=list)
    score_diff: float | None = None


def make_windows(question_ids: Sequence[int], context_ids: Sequence[int],
                 context_offsets: Sequence[Offset], *, cls_id: int, sep_id: int,
                 max_length: int, stride: int, answer: Offset | None = None,
                 example: int = 0) -> list[QAWindow]:
    """The windows of one example (module docstring): ``context_offsets[k]`` are the
    ``(start, end)`` characters of context token ``k``; ``answer`` the gold answer's
    characters ``(start, end)``, end exclusive, or None (impossible, or unknown)."""
    if len(context_ids) != len(context_offsets):
        raise ConfigError(f"{len(context_ids)} context ids but {len(context_offsets)} "
                          "offsets; expected one (start, end) per token")
    room = max_length - len(question_ids) - 3
    if room < 1:
        raise DataError(f"example {example}: the question has {len(question_ids)} tokens, "
                        f"which leaves no room for the context in max_length={max_length}")
    if not 0 <= stride < room:
        raise ConfigError(f"stride={stride} must be >= 0 and smaller than the context room "
                          f"of example {example} ({room} = max_length - question tokens "
                          "- 3)")
    starts = [0]
    while starts[-1] + room < len(context_ids):
        starts.append(starts[-1] + room - stride)
    head = [cls_id, *question_ids, sep_id]
    windows = []
    for s in starts:
        chunk = list(context_ids[s:s + room])
        offs = [tuple(o) for o in context_offsets[s:s + room]]
        win = QAWindow(example, [*head, *chunk, sep_id],
                       [0] * len(head) + [1] * (len(chunk) + 1),
                       [None] * len(head) + offs + [None])
        if answer is not None and offs and (offs[0][0] <= answer[0]
                                            and offs[-1][1] >= answer[1]):
            first = len(head)
            win.start_position = first + max(k for k, o in enumerate(offs) if o[0] <= answer[0])
            win.end_position = first + min(k for k, o in enumerate(offs) if o[1] >= answer[1])
        windows.append(win)
    return windows


def encode_qa(records: Sequence[dict], tokenizer, *, max_length: int = 384,
              stride: int = 128) -> list[QAWindow]:
    """The windows of SQuAD records (:func:`lmforge.data.squad.read_squad`), tokenized
    by an lmforge :class:`~lmforge.tokenize.Tokenizer` (its ``[CLS]``/``[SEP]`` are the
    ``bos``/``eos`` roles; offsets come from the underlying ``tokenizers`` encodings).
    The question's leading whitespace is dropped (as ``run_qa.py`` does); the gold answer
    is a record's first one, none for an impossible question or one without answers."""
    cls, sep, _ = _specials(tokenizer)
    questions = _encodings(tokenizer, [r["question"].lstrip() for r in records])
    contexts = _encodings(tokenizer, [r["context"] for r in records])
    windows = []
    for i, (r, q, c) in enumerate(zip(records, questions, contexts, strict=True)):
        answer = None
        if r.get("answers") and not r.get("is_impossible"):
            a = r["answers"][0]
            answer = (a["answer_start"], a["answer_start"] + len(a["text"]))
        windows += make_windows(q.ids, c.ids, c.offsets, cls_id=cls, sep_id=sep,
                                max_length=max_length, stride=stride, answer=answer,
                                example=i)
    return windows


def _top(logits: np.ndarray, n: int) -> list[int]:
    return np.argsort(-logits, kind="stable")[:n].tolist()


def _softmax(scores: list[float]) -> list[float]:
    x = np.asarray(scores, dtype=np.float64)
    x = np.exp(x - x.max())
    return (x / x.sum()).tolist()


def _spans(offsets: list[Offset | None], s: np.ndarray, e: np.ndarray, context: str,
           n_best: int, max_answer_length: int) -> list[dict]:
    """The candidate spans of one window: pairs of its top-``n_best`` start and end
    positions, both in the context, ``end >= start``, at most ``max_answer_length``."""
    out = []
    for i in _top(s, n_best):
        for j in _top(e, n_best):
            if offsets[i] is None or offsets[j] is None:
                continue
            if j < i or j - i + 1 > max_answer_length:
                continue
            a, b = offsets[i][0], offsets[j][1]
            out.append({"text": context[a:b], "start": a, "end": b,
                        "score": float(s[i] + e[j]), "start_logit": float(s[i]),
                        "end_logit": float(e[j])})
    return out


def _logits(rows: Sequence, w: int, n: int, what: str) -> np.ndarray:
    x = np.asarray(rows[w], dtype=np.float64).ravel()
    if len(x) < n:
        raise ConfigError(f"window {w} has {n} tokens but {len(x)} {what} logits")
    return x[:n]  # past the window's tokens: padding


def postprocess_qa(windows: Sequence[QAWindow], start_logits: Sequence, end_logits: Sequence,
                   contexts: Sequence[str], *, n_best: int = 20, max_answer_length: int = 30,
                   with_null: bool = False, null_threshold: float = 0.0
                   ) -> list[QAPrediction]:
    """One :class:`QAPrediction` per context (example ``k`` of the windows reads
    ``contexts[k]``), from each window's start and end logits (1-D, at least as long as
    the window) by the rule of the module docstring."""
    if n_best < 1 or max_answer_length < 1:
        raise ConfigError(f"n_best={n_best} and max_answer_length={max_answer_length} must "
                          "be >= 1")
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ConfigError(f"{len(windows)} windows but {len(start_logits)} start and "
                          f"{len(end_logits)} end logit rows; expected one row per window")
    per_example: list[list[int]] = [[] for _ in contexts]
    for w, win in enumerate(windows):
        if not 0 <= win.example < len(contexts):
            raise ConfigError(f"window {w} is of example {win.example}, but there are "
                              f"{len(contexts)} contexts")
        per_example[win.example].append(w)
    out = []
    for k, context in enumerate(contexts):
        if not per_example[k]:
            raise ConfigError(f"example {k} has no window")
        cands, null = [], None
        for w in per_example[k]:
            n = len(windows[w].offsets)
            s, e = _logits(start_logits, w, n, "start"), _logits(end_logits, w, n, "end")
            if null is None or s[0] + e[0] < null["score"]:
                null = {"text": "", "start": None, "end": None, "score": float(s[0] + e[0]),
                        "start_logit": float(s[0]), "end_logit": float(e[0])}
            cands += _spans(windows[w].offsets, s, e, context, n_best, max_answer_length)
        if with_null:
            cands.append(null)
        nbest = sorted(cands, key=lambda c: -c["score"])[:n_best]
        if with_null and not any(c is null for c in nbest):
            nbest.append(null)
        for c, p in zip(nbest, _softmax([c["score"] for c in nbest]) if nbest else [],
                        strict=True):
            c["probability"] = p
        best = next((c for c in nbest if c is not null), None)
        if not with_null:
            out.append(QAPrediction(best["text"] if best else "", nbest))
            continue
        diff = None if best is None else null["score"] - best["score"]
        text = best["text"] if diff is not None and diff <= null_threshold else ""
        out.append(QAPrediction(text, nbest, diff))
    return out
