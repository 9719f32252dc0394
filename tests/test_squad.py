"""SQuAD JSON: v1.1 and v2.0 files read into the records written out by hand, write ->
read round trips (English and Chinese), and every bad input one DataError line naming
the file and the place (``data[i].paragraphs[j].qas[k]``)."""

from __future__ import annotations

import copy
import json

import pytest
from fakes import one_line_error as error

from lmforge.data.squad import read_squad, write_squad
from lmforge.errors import ConfigError, DataError

PARIS = "Paris is the capital of France. Lyon is its third city."
BEIJING = "北京是中国的首都，人口2189万。"
V2 = {
    "version": "v2.0",
    "data": [
        {"title": "France", "paragraphs": [{"context": PARIS, "qas": [
            {"id": "q1", "question": "What is the capital of France?", "is_impossible": False,
             "answers": [{"text": "Paris", "answer_start": 0},
                         {"text": "Paris", "answer_start": 0}]},
            {"id": "q2", "question": "What is the capital of Spain?", "is_impossible": True,
             "answers": [], "plausible_answers": [{"text": "Lyon", "answer_start": 32}]},
        ]}]},
        {"title": "北京", "paragraphs": [{"context": BEIJING, "qas": [
            {"id": "q3", "question": "北京有多少人？", "is_impossible": False,
             "answers": [{"text": "2189万", "answer_start": 11}]},
        ]}]},
    ],
}
RECORDS = [
    {"id": "q1", "title": "France", "context": PARIS,
     "question": "What is the capital of France?",
     "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}],
     "is_impossible": False},
    {"id": "q2", "title": "France", "context": PARIS,
     "question": "What is the capital of Spain?", "answers": [], "is_impossible": True,
     "plausible_answers": [{"text": "Lyon", "answer_start": 32}]},
    {"id": "q3", "title": "北京", "context": BEIJING, "question": "北京有多少人？",
     "answers": [{"text": "2189万", "answer_start": 11}], "is_impossible": False},
]


def write(tmp_path, obj, name="train.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return p


def test_v2_file_reads_into_flat_records(tmp_path):
    assert read_squad(write(tmp_path, V2)) == RECORDS
    # The spans really are the answers (the fixture is right, not just read back).
    for r in RECORDS:
        for a in r["answers"] + r.get("plausible_answers", []):
            assert r["context"][a["answer_start"]:][:len(a["text"])] == a["text"]


def test_v1_file_has_no_impossible_questions(tmp_path):
    v1 = {"version": "1.1", "data": [{"title": "France", "paragraphs": [
        {"context": PARIS, "qas": [{"id": "a", "question": "Capital?",
                                    "answers": [{"text": "France", "answer_start": 24}]}]}]}]}
    assert read_squad(write(tmp_path, v1)) == [
        {"id": "a", "title": "France", "context": PARIS, "question": "Capital?",
         "answers": [{"text": "France", "answer_start": 24}], "is_impossible": False}]


def test_integer_ids_and_missing_titles(tmp_path):
    obj = {"data": [{"paragraphs": [{"context": "abc", "qas": [
        {"id": 7, "question": "q?", "answers": [{"text": "b", "answer_start": 1}]}]}]}]}
    [rec] = read_squad(write(tmp_path, obj))
    assert (rec["id"], rec["title"]) == ("7", "")


def test_write_then_read_is_the_same_file_and_records(tmp_path):
    out = tmp_path / "out.json"
    write_squad(RECORDS, out, "2.0")
    assert json.loads(out.read_text(encoding="utf-8")) == V2  # regrouped as the original
    assert read_squad(out) == RECORDS


def test_write_regroups_by_title_and_context_in_first_seen_order(tmp_path):
    shuffled = [RECORDS[0], RECORDS[2], RECORDS[1]]
    out = tmp_path / "out.json"
    write_squad(shuffled, out, "2.0")
    data = json.loads(out.read_text(encoding="utf-8"))["data"]
    assert [a["title"] for a in data] == ["France", "北京"]
    assert [q["id"] for q in data[0]["paragraphs"][0]["qas"]] == ["q1", "q2"]


def test_write_v1(tmp_path):
    out = tmp_path / "v1.json"
    write_squad([RECORDS[0], RECORDS[2]], out, "1.1")
    obj = json.loads(out.read_text(encoding="utf-8"))
    assert obj["version"] == "1.1"
    assert all("is_impossible" not in q for a in obj["data"] for p in a["paragraphs"]
               for q in p["qas"])
    assert read_squad(out) == [RECORDS[0], RECORDS[2]]
    msg = error(DataError, write_squad, RECORDS, out, "1.1")
    assert "record 1 (id 'q2') is impossible" in msg
    assert "version='3'" in error(ConfigError, write_squad, RECORDS, out, "3")


def test_files_to_predict_may_lack_answers(tmp_path):
    obj = {"data": [{"title": "t", "paragraphs": [{"context": PARIS, "qas": [
        {"id": "x", "question": "Capital?"}, {"id": "y", "question": "City?", "answers": []}]}]}]}
    p = write(tmp_path, obj)
    assert [r["answers"] for r in read_squad(p, require_answers=False)] == [[], []]
    assert "field 'answers' is missing" in error(DataError, read_squad, p)


def _q(obj, k=0):
    return obj["data"][0]["paragraphs"][0]["qas"][k]


def _set(path, value):
    def change(obj):
        *head, last = path
        for key in head:
            obj = obj[key]
        obj[last] = value
    return change


def _delete(path):
    def change(obj):
        *head, last = path
        for key in head:
            obj = obj[key]
        del obj[last]
    return change


Q0 = ("data", 0, "paragraphs", 0, "qas", 0)
P0 = ("data", 0, "paragraphs", 0)
WHERE = "data[0].paragraphs[0].qas[0]"

BAD = [
    (_delete(("data",)), ": field 'data' is missing (fields: version)"),
    (_set(("data",), {}), ": field 'data' is an object, expected a list"),
    (_set(("data", 0), []), ": data[0]: expected an article"),
    (_delete(("data", 0, "paragraphs")), ": data[0]: field 'paragraphs' is missing"),
    (_set(("data", 0, "title"), 3), ": data[0]: field 'title' is a number"),
    (_delete(P0 + ("context",)), ": data[0].paragraphs[0]: field 'context' is missing"),
    (_set(P0 + ("context",), "  "), ": data[0].paragraphs[0]: field 'context' is empty"),
    (_delete(P0 + ("qas",)), ": data[0].paragraphs[0]: field 'qas' is missing"),
    (_delete(Q0 + ("question",)), f": {WHERE}: field 'question' is missing"),
    (_set(Q0 + ("question",), ""), f": {WHERE}: field 'question' is empty"),
    (_delete(Q0 + ("id",)), f": {WHERE}: field 'id' is missing"),
    (_set(Q0 + ("id",), None), f": {WHERE}: field 'id' is null, expected a string"),
    (_set(("data", 1, "paragraphs", 0, "qas", 0, "id"), "q1"),
     ": data[1].paragraphs[0].qas[0]: id 'q1' is also the id of "
     "data[0].paragraphs[0].qas[0]; ids must be unique"),
    (_set(Q0 + ("answers", 1, "answer_start"), 32),
     f": {WHERE}: answer 'Paris' at 32 does not match the context ('Lyon '); "
     "the text occurs at 0"),
    (_set(Q0 + ("answers", 1, "text"), "Berlin"),
     f": {WHERE}: answer 'Berlin' at 0 does not match the context ('Paris ')"),
    (_set(Q0 + ("answers", 0, "answer_start"), -1),
     f": {WHERE}: answer 'Paris' at -1 is outside the context (length 55)"),
    (_set(Q0 + ("answers", 0, "answer_start"), 52),
     f": {WHERE}: answer 'Paris' at 52 is outside the context (length 55)"),
    (_set(Q0 + ("answers", 0, "answer_start"), "0"),
     f": {WHERE}.answers[0]: field 'answer_start' is a string, expected an integer"),
    (_set(Q0 + ("answers", 0, "text"), ""), f": {WHERE}.answers[0]: field 'text' is empty"),
    (_set(Q0 + ("answers", 0), "Paris"), f": {WHERE}.answers[0]: expected an answer"),
    (_set(Q0 + ("answers",), {}), f": {WHERE}: field 'answers' is an object, expected a list"),
    (_set(Q0 + ("is_impossible",), True),
     f": {WHERE}: is_impossible is true but the question has 2 answer(s)"),
    (_set(Q0 + ("is_impossible",), "no"),
     f": {WHERE}: field 'is_impossible' is a string, expected true or false"),
    (_set(Q0 + ("answers",), []),
     f": {WHERE}: the question has no answers and is not marked is_impossible"),
    (_set(("data", 0, "paragraphs", 0, "qas", 1, "plausible_answers", 0, "answer_start"), 0),
     ": data[0].paragraphs[0].qas[1]: plausible answer 'Lyon' at 0 does not match the "
     "context ('Pari'); the text occurs at 32"),
    (_set(Q0 + ("question",), "\ud800?"),
     f": {WHERE}: field 'question' holds the unpaired surrogate \\ud800"),
    (_set(("data",), [{"title": "t", "paragraphs": []}]), ": no questions"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_file_is_one_line_naming_the_place(tmp_path, change, message):
    obj = copy.deepcopy(V2)
    change(obj)
    p = tmp_path / "train.json"
    p.write_text(json.dumps(obj), encoding="utf-8")  # ASCII escapes: surrogates survive
    msg = error(DataError, read_squad, p)
    assert msg.startswith(f"{p}{message}"), msg


def test_the_answerable_question_without_answers_is_fine_when_not_required(tmp_path):
    obj = copy.deepcopy(V2)
    _q(obj)["answers"] = []
    assert read_squad(write(tmp_path, obj), require_answers=False)[0]["answers"] == []


@pytest.mark.parametrize(("content", "message"), [
    (b"", ": empty file"),
    (b'{"data": [\n  {"title": "x",,}]}', ":line 2: invalid JSON (Expecting property name "
                                         "enclosed in double quotes at column 17)"),
    (b'{"data": []}\n\xff', ":line 2: not valid UTF-8"),
    (b"[1, 2]", ": expected a JSON object {\"data\": [...]}, got an array"),
])
def test_not_json_or_not_utf8(tmp_path, content, message):
    p = tmp_path / "train.json"
    p.write_bytes(content)
    msg = error(DataError, read_squad, p)
    assert msg.startswith(f"{p}{message}"), msg


def test_missing_file(tmp_path):
    assert "cannot read" in error(DataError, read_squad, tmp_path / "nope.json")
