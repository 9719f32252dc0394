"""SQuAD v1.1 / v2.0 JSON in and out (also CMRC 2018 and other sets in SQuAD's shape).

File
----
One JSON object ``{"version", "data": [article, ...]}``; an article is ``{"title",
"paragraphs": [{"context", "qas": [qa, ...]}, ...]}`` and a ``qa`` is ``{"id",
"question", "answers": [{"text", "answer_start"}, ...]}``, plus in v2.0
``"is_impossible"`` (true: no answer in the context, ``answers`` empty) and, for those,
``"plausible_answers"`` (wrong answers the annotators wrote down).

Records
-------
:func:`read_squad` flattens the file into one record per question::

    {"id", "title", "context", "question", "answers": [{"text", "answer_start"}],
     "is_impossible", "plausible_answers"?}

``answer_start`` counts characters (Python ``str`` indices) of ``context``, so
``context[s:s + len(text)] == text``. ``is_impossible`` is False when the file has none
(v1.1). ``plausible_answers`` is kept, checked like the answers, only where the file has
it. ``title`` is ``""`` when missing; an integer id becomes its string.

Errors
------
Every mistake raises :class:`~lmforge.errors.DataError` with one line naming the file and
the place in it: ``train.json: data[3].paragraphs[0].qas[2]: answer 'Paris' at 10 does
not match the context ('Lyon,')``. Checked: UTF-8 and JSON syntax (with the line), the
shape (``data``, ``paragraphs``, ``context``, ``qas``, ``id``, ``question``, ``answers``
present and of the right type), an empty context or question, an answer outside its
context or not matching it, an impossible question with answers, an answerable one
without (unless ``require_answers=False``, for files to predict), duplicate ids, a file
without questions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import atomic_write_json
from .conll import numbered_lines
from .readers import _SURROGATE, _json_type, parse_json
from .task_readers import _get, _is_int, _text

__all__ = ["read_squad", "write_squad", "SQUAD_VERSIONS"]

#: ``write_squad`` versions -> the ``"version"`` string of the official files.
SQUAD_VERSIONS = {"1.1": "1.1", "2.0": "v2.0"}


def _load(p: Path) -> object:
    """The JSON value of ``p``: invalid UTF-8 or JSON is a DataError naming the line."""
    text = "".join(line for _, line in numbered_lines(p))
    if not text.strip():
        raise DataError(f"{p}: empty file, expected SQuAD JSON ({{\"data\": [...]}})")
    return parse_json(p, text)


def _list(obj: dict, field: str, where: str) -> list:
    value = _get(obj, field, where)
    if not isinstance(value, list):
        raise DataError(f"{where}: field {field!r} is {_json_type(value)}, expected a list")
    return value


def _object(value: object, where: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected {what} (a JSON object), got {_json_type(value)}")
    return value


def _string(obj: dict, field: str, where: str) -> str:
    """A non-empty string field without unpaired surrogates (a JSON ``"\\ud800"``)."""
    value = _text(obj, field, where)
    if bad := _SURROGATE.search(value):
        raise DataError(f"{where}: field {field!r} holds the unpaired surrogate "
                        f"\\u{ord(bad.group()):04x}, which is not valid Unicode")
    return value


def _answers(qa: dict, field: str, context: str, where: str) -> list[dict]:
    """The ``answers`` (or ``plausible_answers``) of ``qa``, each inside and matching
    ``context``."""
    out = []
    for k, ans in enumerate(_list(qa, field, where)):
        at = f"{where}.{field}[{k}]"
        ans = _object(ans, at, "an answer {\"text\", \"answer_start\"}")
        text = _string(ans, "text", at)
        start = _get(ans, "answer_start", at)
        if not _is_int(start):
            raise DataError(f"{at}: field 'answer_start' is {_json_type(start)}, expected "
                            "an integer (a character index into the context)")
        what = "answer" if field == "answers" else "plausible answer"
        if start < 0 or start + len(text) > len(context):
            raise DataError(f"{where}: {what} {text!r} at {start} is outside the context "
                            f"(length {len(context)})")
        found = context[start:start + len(text)]
        if found != text:
            elsewhere = context.find(text)
            hint = f"; the text occurs at {elsewhere}" if elsewhere >= 0 else ""
            raise DataError(f"{where}: {what} {text!r} at {start} does not match the "
                            f"context ({found!r}){hint}")
        out.append({"text": text, "answer_start": start})
    return out


def _question_id(qa: dict, where: str) -> str:
    qid = _get(qa, "id", where)
    return str(qid) if _is_int(qid) else _string(qa, "id", where)


def _question(qa: object, context: str, where: str, require_answers: bool) -> dict:
    """The record fields of one ``qa``: id, question, answers, is_impossible (and
    plausible_answers where given)."""
    qa = _object(qa, where, "a question {\"id\", \"question\", \"answers\"}")
    rec = {"id": _question_id(qa, where), "question": _string(qa, "question", where)}
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise DataError(f"{where}: field 'is_impossible' is {_json_type(impossible)}, "
                        "expected true or false")
    answers = (_answers(qa, "answers", context, where)
               if "answers" in qa or require_answers else [])
    if impossible and answers:
        raise DataError(f"{where}: is_impossible is true but the question has "
                        f"{len(answers)} answer(s); an impossible question has none (put "
                        "them in 'plausible_answers')")
    if require_answers and not impossible and not answers:
        raise DataError(f"{where}: the question has no answers and is not marked "
                        "is_impossible (training data needs an answer; read files to "
                        "predict with require_answers=False)")
    rec["answers"], rec["is_impossible"] = answers, impossible
    if "plausible_answers" in qa:
        rec["plausible_answers"] = _answers(qa, "plausible_answers", context, where)
    return rec


def _qas(data: object, p: Path, require_answers: bool) -> Iterator[tuple[str, dict]]:
    """``(place, record)`` for each question, ``place`` like ``data[3].paragraphs[0].qas[2]``."""
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected a JSON object {{\"data\": [...]}}, got "
                        f"{_json_type(data)}")
    for i, article in enumerate(_list(data, "data", str(p))):
        aw = f"{p}: data[{i}]"
        article = _object(article, aw, "an article {\"title\", \"paragraphs\"}")
        title = article.get("title", "")
        if not isinstance(title, str):
            raise DataError(f"{aw}: field 'title' is {_json_type(title)}, expected a string")
        for j, para in enumerate(_list(article, "paragraphs", aw)):
            pw = f"{aw}.paragraphs[{j}]"
            para = _object(para, pw, "a paragraph {\"context\", \"qas\"}")
            context = _string(para, "context", pw)
            for k, qa in enumerate(_list(para, "qas", pw)):
                loc = f"data[{i}].paragraphs[{j}].qas[{k}]"
                rec = _question(qa, context, f"{p}: {loc}", require_answers)
                yield loc, {"id": rec.pop("id"), "title": title, "context": context, **rec}


def read_squad(path: str | os.PathLike, *, require_answers: bool = True) -> list[dict]:
    """The questions of a SQuAD v1.1/v2.0 JSON file as flat records (module docstring).

    ``require_answers=True`` (training and evaluation data): every question not marked
    ``is_impossible`` needs at least one answer. ``False`` (data to predict): ``answers``
    may be missing or empty (the record then holds ``[]``).
    """
    p = Path(path)
    seen: dict[str, str] = {}
    out = []
    for loc, rec in _qas(_load(p), p, require_answers):
        if rec["id"] in seen:
            raise DataError(f"{p}: {loc}: id {rec['id']!r} is also the id of "
                            f"{seen[rec['id']]}; ids must be unique")
        seen[rec["id"]] = loc
        out.append(rec)
    if not out:
        raise DataError(f"{p}: no questions (expected data[].paragraphs[].qas[])")
    return out


def write_squad(records: Iterable[dict], path: str | os.PathLike,
                version: str = "2.0") -> None:
    """Write records as a SQuAD JSON file, atomically: questions grouped into paragraphs
    by ``context`` and paragraphs into articles by ``title`` (each in order of first
    appearance, questions in record order). ``version`` ``"2.0"`` writes
    ``is_impossible`` (and ``plausible_answers`` where a record has them); ``"1.1"``
    writes neither and refuses an impossible question."""
    if version not in SQUAD_VERSIONS:
        raise ConfigError(f"version={version!r} is not one of {', '.join(SQUAD_VERSIONS)}")
    articles: dict[str, dict[str, list[dict]]] = {}
    for i, rec in enumerate(records):
        qa = {"id": rec["id"], "question": rec["question"],
              "answers": [{"text": a["text"], "answer_start": a["answer_start"]}
                          for a in rec["answers"]]}
        if version == "2.0":
            qa["is_impossible"] = bool(rec.get("is_impossible", False))
            if "plausible_answers" in rec:
                qa["plausible_answers"] = rec["plausible_answers"]
        elif rec.get("is_impossible"):
            raise DataError(f"cannot write {path} as SQuAD 1.1: record {i} (id "
                            f"{rec['id']!r}) is impossible, which only 2.0 can hold")
        paragraphs = articles.setdefault(rec.get("title", ""), {})
        paragraphs.setdefault(rec["context"], []).append(qa)
    data = [{"title": title, "paragraphs": [{"context": c, "qas": qas}
                                            for c, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()]
    atomic_write_json(path, {"version": SQUAD_VERSIONS[version], "data": data})
