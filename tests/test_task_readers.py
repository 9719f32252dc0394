"""Task data formats: CoNLL, NER JSONL, OpenNRE relations and classification tables.

Round trips (write -> read) in English and Chinese; a CoNLL-2003 snippet in IOB1 turned
into IOB2 and BIOES, checked against hand-written tags and seqeval's reading of the same
tags; and every bad input raises one DataError line naming the file and line."""

from __future__ import annotations

import json
import warnings

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from lmforge.data.tags import tag_errors
from lmforge.data.task_readers import (
    auto_tokenize,
    check_labels,
    convert_conll,
    read_classification,
    read_conll,
    read_ner_jsonl,
    read_relations,
    write_classification,
    write_conll,
    write_ner_jsonl,
    write_relations,
)
from lmforge.errors import DataError

# CoNLL-2003 style: token, POS, chunk, NER, all in IOB1 (B- only between two adjacent
# chunks of one type: "Japan China" are two LOC entities).
CONLL_IOB1 = """\
-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
to TO I-VP O
boycott VB I-VP O
British JJ I-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

Talks NNS I-NP O
in IN I-PP O
Japan NNP I-NP I-LOC
China NNP I-NP B-LOC
and CC O O
South NNP I-NP I-LOC
Korea NNP I-NP I-LOC
"""
IOB1 = [["I-ORG", "O", "I-MISC", "O", "O", "O", "I-MISC", "O", "O"],
        ["I-PER", "I-PER"],
        ["O", "O", "I-LOC", "B-LOC", "O", "I-LOC", "I-LOC"]]
IOB2 = [["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
        ["B-PER", "I-PER"],
        ["O", "O", "B-LOC", "B-LOC", "O", "B-LOC", "I-LOC"]]
BIOES = [["S-ORG", "O", "S-MISC", "O", "O", "O", "S-MISC", "O", "O"],
         ["B-PER", "E-PER"],
         ["O", "O", "S-LOC", "S-LOC", "O", "B-LOC", "E-LOC"]]


def write(tmp_path, name: str, text: str | bytes):
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def jsonl(tmp_path, name: str, *objs) -> object:
    return write(tmp_path, name, "".join(
        (o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)) + "\n" for o in objs))


def strip(records):
    return [{k: v for k, v in r.items() if k != "_line"} for r in records]


def token_spans(rec) -> list[tuple[str, int, int]]:
    """The record's spans in token positions, ends inclusive (as seqeval gives them)."""
    starts = {s: k for k, (s, _) in enumerate(rec["offsets"])}
    ends = {e: k for k, (_, e) in enumerate(rec["offsets"])}
    return [(d["label"], starts[d["start"]], ends[d["end"]]) for d in rec["spans"]]


def error(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- CoNLL


def test_conll2003_iob1_read_as_iob2_and_bioes(tmp_path):
    p = write(tmp_path, "eng.train", CONLL_IOB1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read as IOB1 (detected), so nothing is repaired
        recs = read_conll(p)
    assert [r["tags"] for r in recs] == IOB2
    assert [r["tags"] for r in read_conll(p, scheme="BIOES")] == BIOES
    assert [r["tags"] for r in read_conll(p, scheme="IOB1")] == IOB1
    # seqeval reads the IOB1 tags into the same chunks our spans hold
    for rec, tags in zip(recs, IOB1, strict=True):
        assert token_spans(rec) == get_entities(tags)
    first, _, third = recs
    assert first["text"] == "EU rejects German call to boycott British lamb ."
    assert first["spans"][1] == {"start": 11, "end": 17, "label": "MISC", "text": "German"}
    assert first["columns"][0] == ["NNP", "I-NP"] and first["doc_start"] is True
    assert "doc_start" not in recs[1] and third["doc_start"] is True
    assert [r["_line"] for r in recs] == [3, 13, 18]
    assert [d["text"] for d in third["spans"]] == ["Japan", "China", "South Korea"]
    for r in recs:
        assert all(r["text"][s:e] == t for (s, e), t in zip(r["offsets"], r["tokens"],
                                                           strict=True))


def test_convert_conll_keeps_columns_and_docstart(tmp_path):
    src = write(tmp_path, "eng.train", CONLL_IOB1)
    dst = tmp_path / "eng.bioes"
    assert convert_conll(src, dst, to_scheme="iobes") == 3
    lines = dst.read_text().splitlines()
    assert lines[:4] == ["-DOCSTART- -X- -X- O", "", "EU NNP I-NP S-ORG", "rejects VBZ I-VP O"]
    assert "China NNP I-NP S-LOC" in lines and "Korea NNP I-NP E-LOC" in lines
    assert strip(read_conll(dst)) == strip(read_conll(src))  # BIOES detected, read as IOB2


def test_conll_chinese_round_trip(tmp_path):
    chars = list("1998年，张三去北京大学")
    tags = ["O"] * 6 + ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    p = write(tmp_path, "zh.txt", "".join(f"{c}\t{t}\n" for c, t in zip(chars, tags,
                                                                        strict=True)))
    rec, = read_conll(p)
    assert rec["text"] == "1998年，张三去北京大学" and rec["offsets"][6] == [6, 7]
    assert [(d["text"], d["label"]) for d in rec["spans"]] == [("张三", "PER"),
                                                                ("北京大学", "ORG")]
    en = {"tokens": ["I", "saw", "Li", "Lei"], "tags": ["O", "O", "B-PER", "B-PER"]}
    out = tmp_path / "out.conll"
    write_conll([rec, en], out, scheme="BIOES")
    back = read_conll(out, scheme="BIOES")
    assert back[0]["tags"][6:8] == ["B-PER", "E-PER"] and back[1]["text"] == "I saw Li Lei"
    assert strip(read_conll(out))[0] == strip([rec])[0]
    assert back[1]["tags"] == ["O", "O", "S-PER", "S-PER"]


def test_repair_warns_once_and_returns_legal_tags(tmp_path):
    p = write(tmp_path, "bad.conll", "Hi O\nthere I-PER\n\nAnn B-PER\nLee I-LOC\nok O\n")
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        recs = read_conll(p, input_scheme="IOB2")
    assert len(got) == 1
    msg = str(got[0].message)
    assert str(p) in msg and "repaired 2 illegal IOB2 tag(s)" in msg and f"{p}:line 2" in msg
    assert [r["tags"] for r in recs] == [["O", "B-PER"], ["B-PER", "B-LOC", "O"]]
    for r, raw in zip(recs, [["O", "I-PER"], ["B-PER", "I-LOC", "O"]], strict=True):
        assert tag_errors(r["tags"], "IOB2") == []
        assert token_spans(r) == get_entities(raw)  # the chunks conlleval/seqeval read
    msg = error(read_conll, p, input_scheme="IOB2", on_illegal="error")
    assert msg.startswith(f"{p}:line 2: illegal IOB2 tag sequence at token 2:")


# ----------------------------------------------------------------------------- NER JSONL


def test_ner_jsonl_from_spans_round_trip(tmp_path):
    en = {"text": "Barack Obama visited New York.", "spans": [
        {"start": 0, "end": 12, "label": "PER", "text": "Barack Obama"}, [21, 29, "LOC"]]}
    zh = {"text": "张三在北京工作", "spans": [{"start": 3, "end": 5, "label": "LOC"},
                                       {"start": 0, "end": 2, "label": "PER"}], "id": 7}
    p = jsonl(tmp_path, "ner.jsonl", en, "", zh)
    a, b = read_ner_jsonl(p, scheme="BIOES")
    assert a["tokens"] == ["Barack", "Obama", "visited", "New", "York", "."]
    assert a["tags"] == ["B-PER", "E-PER", "O", "B-LOC", "E-LOC", "O"]
    assert b["tokens"] == list("张三在北京工作") and b["_line"] == 3 and b["id"] == 7
    assert b["tags"] == ["B-PER", "E-PER", "O", "B-LOC", "E-LOC", "O", "O"]
    assert [d["text"] for d in b["spans"]] == ["张三", "北京"]
    out = tmp_path / "out.jsonl"
    write_ner_jsonl([a, b], out)
    assert "_line" not in out.read_text()
    assert strip(read_ner_jsonl(out, scheme="BIOES")) == strip([a, b])
    iob2 = read_ner_jsonl(out)  # the BIOES tags in the file are detected and converted
    assert iob2[1]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]
    assert iob2[1]["spans"] == b["spans"]


def test_ner_jsonl_given_tokens_and_custom_tokenizer(tmp_path):
    rec = {"text": "New  York-based", "tokens": ["New", "York-based"], "tags": ["I-LOC", "O"]}
    p = jsonl(tmp_path, "t.jsonl", rec)
    out, = read_ner_jsonl(p)  # IOB1 detected ("I-" starts a chunk)
    assert out["offsets"] == [[0, 3], [5, 15]] and out["tags"] == ["B-LOC", "O"]
    assert out["spans"] == [{"start": 0, "end": 3, "label": "LOC", "text": "New"}]
    p = jsonl(tmp_path, "u.jsonl", {"text": "a New-York b", "spans": [[2, 10, "LOC"]]})
    got, = read_ner_jsonl(p, tokenize=str.split)
    assert got["tokens"] == ["a", "New-York", "b"] and got["tags"] == ["O", "B-LOC", "O"]
    assert auto_tokenize("Obama's 2 猫.") == ["Obama", "'", "s", "2", "猫", "."]


# ----------------------------------------------------------------------------- relations


def test_relations_text_and_token_variants(tmp_path):
    text = {"text": "Bill Gates founded Microsoft.", "h": {"name": "Bill Gates", "pos": [0, 10]},
            "t": {"name": "Microsoft", "id": "Q2283", "pos": [19, 28]}, "relation": "founder"}
    token = {"token": ["merpati", "flight", "106", "departed", "TJQ", "."],
             "h": {"name": "tjq", "id": "Q1331049", "pos": [4, 5]},
             "t": {"name": "merpati flight 106", "pos": [0, 3]}, "relation": None}
    zh = {"token": list("马云创办了阿里巴巴"), "h": {"name": "马云", "pos": [0, 2]},
          "t": {"name": "阿里巴巴", "pos": [5, 9]}, "relation": "创始人"}
    p = jsonl(tmp_path, "rel.jsonl", text, token, zh)
    a, b, c = read_relations(p)
    assert a["h"] == {"name": "Bill Gates", "pos": [0, 10]} and a["t"]["id"] == "Q2283"
    assert b["text"] == "merpati flight 106 departed TJQ ."
    assert b["h"] == {"name": "tjq", "id": "Q1331049", "pos": [28, 31]}
    assert b["t"]["pos"] == [0, 18] and b["relation"] == "no_relation" and "token" not in b
    assert c["text"] == "马云创办了阿里巴巴" and c["t"]["pos"] == [5, 9]
    assert c["text"][slice(*c["t"]["pos"])] == "阿里巴巴"
    out = tmp_path / "out.jsonl"
    write_relations([a, b, c], out)
    assert strip(read_relations(out)) == strip([a, b, c])


# ----------------------------------------------------------------------------- classification


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv"])
def test_classification_round_trip(tmp_path, suffix):
    recs = [{"text": "好看的电影", "text_b": "I liked it, \"a lot\"", "label": "pos", "id": "1"},
            {"text": "boring", "text_b": "无聊", "label": "neg", "id": "2"}]
    p = tmp_path / f"data{suffix}"
    write_classification(recs, p)
    got = read_classification(p, text_b_field="text_b")
    assert strip(got) == recs and [r["_line"] for r in got] == (
        [1, 2] if suffix == ".jsonl" else [2, 3])


def test_classification_fields_and_int_labels(tmp_path):
    p = jsonl(tmp_path, "glue.jsonl", {"sentence": "fine", "label": 1, "idx": 0},
              {"sentence": "bad", "idx": 1})
    assert strip(read_classification(p, text_field="sentence", require_label=False)) == [
        {"text": "fine", "label": "1", "idx": 0}, {"text": "bad", "idx": 1}]
    assert "'label' is missing" in error(read_classification, p, text_field="sentence")


def test_check_labels(tmp_path):
    recs = [{"label": "pos", "_line": 2}, {"label": "neg", "_line": 3},
            {"label": "pos", "_line": 5}, {"label": "neg", "_line": 9}]
    assert check_labels(recs, path="x.csv") == {"neg": 2, "pos": 2}
    assert check_labels(recs, known=["neg", "pos", "neutral"]) == {"neg": 2, "pos": 2}
    ner = [{"spans": [{"label": "PER"}, {"label": "LOC"}]}, {"spans": [{"label": "PER"}]}]
    assert check_labels(ner, "spans", min_count=1) == {"LOC": 1, "PER": 2}
    assert error(check_labels, ner, "spans") == (
        "record 1: label 'LOC' has 1 example(s), training needs at least 2 of each label "
        "(a typo?)")


# ----------------------------------------------------------------------------- errors

CONLL4 = "EU NNP I-NP B-ORG\nrejects VBZ I-VP O\n"
NER = {"text": "Ann met Bob", "spans": [{"start": 0, "end": 3, "label": "PER"}]}
ERRORS = [
    # (file name, content, reader, kwargs, line, fragment)
    ("a.conll", CONLL4 + "\nGerman JJ B-MISC\n", read_conll, {}, 4,
     "3 column(s) in 'German JJ B-MISC', expected 4 like line 1"),
    ("b.conll", "EU\nrejects O\n", read_conll, {}, 1, "expected a token and a tag"),
    ("c.conll", CONLL4 + "Peter NNP I-NP X-PER\n", read_conll, {}, 3, "bad tag 'X-PER'"),
    ("d.conll", CONLL4 + "\nHi NNP I-NP O\nAnn NNP I-NP I-PER\n", read_conll,
     {"input_scheme": "IOB2", "on_illegal": "error"}, 5,
     "illegal IOB2 tag sequence at token 2: I-PER cannot follow O"),
    ("e.conll", b"EU B-ORG\nrejects O\nGer\xe4man B-MISC\n", read_conll, {}, 3,
     "not valid UTF-8: invalid byte 0xe4"),
    ("f.jsonl", [NER, {"text": "Ann met", "tokens": ["Ann", "met"], "tags": ["B-PER"]}],
     read_ner_jsonl, {}, 2, "2 tokens but 1 tags"),
    ("g.jsonl", [NER, NER, {"text": " ", "spans": []}], read_ner_jsonl, {}, 3,
     "field 'text' is empty"),
    ("h.jsonl", [{"text": "Ann", "tokens": [], "spans": []}], read_ner_jsonl, {}, 1,
     "field 'tokens' is an empty list"),
    ("i.jsonl", [{"text": "Ann met Bob", "spans": [[8, 12, "PER"]]}], read_ner_jsonl, {}, 1,
     "span 1 [8, 12) is outside the text (length 11)"),
    ("j.jsonl", [NER, {"text": "Ann", "spans": [{"start": 0, "end": 3, "label": "PER",
                                                 "text": "Bob"}]}], read_ner_jsonl, {}, 2,
     "span 1 text 'Bob' does not match text[0:3] = 'Ann'"),
    ("k.jsonl", [{"text": "New York", "spans": [[0, 8, "LOC"], [4, 8, "LOC"]]}],
     read_ner_jsonl, {}, 1, "spans [0, 8) and [4, 8) overlap"),
    ("l.jsonl", [{"text": "Anna met", "spans": [[0, 3, "PER"]]}], read_ner_jsonl, {}, 1,
     "span [0, 3) 'Ann' does not fall on token boundaries"),
    ("m.jsonl", [{"text": "Ann met", "tags": ["B-PER", "O"], "spans": []}], read_ner_jsonl,
     {}, 1, "the tags and the spans disagree"),
    ("n.jsonl", [{"txt": "hi", "label": "a"}], read_classification, {}, 1,
     "field 'text' is missing (fields: txt, label)"),
    ("o.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b", label: "y"}'],
     read_classification, {}, 2, "invalid JSON"),
    ("p.csv", "sentence,label\nhi,pos\n", read_classification, {}, 1,
     "column 'text' is not in the header (columns: sentence, label)"),
    ("q.tsv", "text\tlabel\nhi\tpos\nbye\n", read_classification, {}, 3,
     "row has 1 fields, the header has 2"),
    ("r.jsonl", [{"text": "a", "label": ["x"]}], read_classification, {}, 1,
     "field 'label' is an array, expected a string or an integer"),
    ("s.jsonl", [{"text": "Bill founded MS", "h": {"pos": [0, 4]}, "t": {"pos": [13, 19]},
                  "relation": "founder"}], read_relations, {}, 1,
     "entity 't' pos [13, 19] is outside the text (15 characters)"),
    ("t.jsonl", [{"token": ["a", "b"], "h": {"name": "b", "pos": [0, 1]},
                  "t": {"pos": [1, 2]}, "relation": "r"}], read_relations, {}, 1,
     "entity 'h' name 'b' does not match the text at pos [0, 1] ('a')"),
    ("u.jsonl", [{"tokens": ["a"], "h": {"pos": [0, 1]}, "t": {"pos": [0, 1]}}],
     read_relations, {}, 1, "field 'text' is missing (fields: tokens, h, t); expected 'text' "
     "or 'token'"),
]


@pytest.mark.parametrize("name,content,reader,kw,line,fragment", ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_bad_input_names_file_and_line(tmp_path, name, content, reader, kw, line, fragment):
    p = jsonl(tmp_path, name, *content) if isinstance(content, list) else write(
        tmp_path, name, content)
    msg = error(reader, p, **kw)
    assert msg.startswith(f"{p}:line {line}: "), msg
    assert fragment in msg, msg


@pytest.mark.parametrize("name,reader", [("e.jsonl", read_ner_jsonl), ("e.conll", read_conll),
                                         ("e.csv", read_classification),
                                         ("e.jsonl", read_relations)])
def test_empty_file_names_the_file(tmp_path, name, reader):
    p = write(tmp_path, name, "\n\n" if name.endswith("jsonl") else "")
    assert error(reader, p).startswith(f"{p}: empty file")
    if name.endswith(".conll"):
        p.write_text("-DOCSTART- -X- -X- O\n\n")
        assert error(reader, p).startswith(f"{p}: empty file")


def test_labels_at_training_and_evaluation(tmp_path):
    p = write(tmp_path, "dev.csv", "text,label\na,pos\nb,neg\nc,pos\nd,nuetral\ne,neg\n")
    recs = read_classification(p)
    msg = error(check_labels, recs, path=p)
    assert msg.startswith(f"{p}:line 5: label 'nuetral' has 1 example(s)")
    msg = error(check_labels, recs, known=["neg", "neutral", "pos"], path=p)
    assert msg == (f"{p}:line 5: label 'nuetral' is not one the model knows (known labels: "
                   "neg, neutral, pos)")


def test_failed_write_leaves_the_old_file(tmp_path):
    out = tmp_path / "keep.conll"
    out.write_text("old\n")
    msg = error(write_conll, [{"tokens": ["a", "b"], "tags": ["O"]}], out)
    assert msg == f"cannot write {out}: record 1: 2 tokens but 1 tags"
    msg = error(write_conll, [{"tokens": ["a"], "tags": ["O"]},
                              {"tokens": ["x", "y"], "tags": ["B-PER", "I-LOC"]}], out)
    assert msg.startswith(f"cannot write {out}: record 2: illegal IOB2 tag sequence at token 2")
    assert out.read_text() == "old\n" and [f.name for f in tmp_path.iterdir()] == [out.name]
