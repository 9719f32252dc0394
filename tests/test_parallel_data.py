"""Parallel data: TSV, JSONL (ours and the Hugging Face ``translation`` shape) and
line-aligned text pairs, in English and Chinese. Each format round-trips (fixed and random
texts); every bad input raises one DataError line naming the file and the line."""

from __future__ import annotations

import json

import pytest
from fakes import one_line_error as error
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.parallel import read_parallel, write_parallel
from lmforge.errors import ConfigError, DataError

PAIRS = [("The cat sat on the mat.", "猫坐在垫子上。"),
         ('She said "hi", then left.', "她说了“嗨”，然后走了。"),
         ("  spaces kept  ", "{json} \\ back\\slash"),
         ("GPT-2 is a model", "GPT-2 是一个模型")]
LANGS = {"src_lang": "en", "tgt_lang": "zh"}


def strip(records: list[dict]) -> list[tuple[str, str]]:
    assert all(set(r) == {"src", "tgt", "_line"} for r in records)
    return [(r["src"], r["tgt"]) for r in records]


def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def jsonl(path, *objs):
    return write(path, "".join((o if isinstance(o, str) else json.dumps(o, ensure_ascii=False))
                               + "\n" for o in objs))




# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["pairs.tsv", "pairs.jsonl", "pairs.json"])
def test_round_trip(tmp_path, name):
    p = tmp_path / name
    write_parallel([{"src": s, "tgt": t, "_line": 9, "id": 1} for s, t in PAIRS], p)
    recs = read_parallel(p, **LANGS)
    assert strip(recs) == PAIRS
    assert [r["_line"] for r in recs] == [1, 2, 3, 4]
    assert "_line" not in p.read_text() and '"id"' not in p.read_text()
    assert [x.name for x in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_tsv_file_layout_and_blank_lines(tmp_path):
    p = tmp_path / "a.tsv"
    write_parallel([{"src": s, "tgt": t} for s, t in PAIRS[:2]], p)
    assert p.read_text().splitlines() == [f"{s}\t{t}" for s, t in PAIRS[:2]]
    write(p, "\ufeffa\tb\r\n\n   \nc\td\n")  # BOM, CRLF, blank lines
    recs = read_parallel(p, **LANGS)
    assert strip(recs) == [("a", "b"), ("c", "d")] and [r["_line"] for r in recs] == [1, 4]


def test_text_file_pair(tmp_path):
    src = write(tmp_path / "train.en", "".join(s + "\n" for s, _ in PAIRS))
    tgt = write(tmp_path / "train.zh", "".join(t + "\n" for _, t in PAIRS).rstrip("\n"))
    assert strip(read_parallel(src, tgt_path=tgt, **LANGS)) == PAIRS
    txt = write(tmp_path / "a.txt", "one\r\ntwo\n")
    assert strip(read_parallel(txt, tgt_path=write(tmp_path / "b.txt", "一\n二\n"),
                               format="text", **LANGS)) == [("one", "一"), ("two", "二")]


def test_huggingface_translation_shape(tmp_path):
    p = jsonl(tmp_path / "wmt.jsonl",
              {"translation": {"de": "Guten Morgen", "en": "Good morning", "zh": "早上好"}},
              "",
              {"translation": {"en": "Thank you", "zh": "谢谢", "de": "Danke"}})
    recs = read_parallel(p, src_lang="zh", tgt_lang="en")
    assert strip(recs) == [("早上好", "Good morning"), ("谢谢", "Thank you")]
    assert [r["_line"] for r in recs] == [1, 3]
    assert strip(read_parallel(p, src_lang="en", tgt_lang="de"))[1] == ("Thank you", "Danke")


def test_format_forced_over_suffix(tmp_path):
    p = write(tmp_path / "data.txt", "a\tb\n")
    assert strip(read_parallel(p, format="tsv", **LANGS)) == [("a", "b")]
    q = jsonl(tmp_path / "data.tsv", {"src": "a", "tgt": "b"})
    assert strip(read_parallel(q, format="jsonl", **LANGS)) == [("a", "b")]


# Texts a TSV line can hold: valid Unicode (no unpaired surrogate: the writer refuses one,
# tested below), not blank, no tab or line break (iter_lines drops a BOM at the start of a
# file, so none starts with one).
TEXT = st.text(st.characters(blacklist_categories=("Cs",),
                             blacklist_characters="\t\n\r\ufeff"),
               min_size=1, max_size=30).filter(str.strip)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=6),
       st.sampled_from(["r.tsv", "r.jsonl"]))
def test_random_round_trip(tmp_path_factory, pairs, name):
    p = tmp_path_factory.mktemp("rt") / name
    write_parallel([{"src": s, "tgt": t} for s, t in pairs], p)
    assert strip(read_parallel(p, **LANGS)) == pairs


# ----------------------------------------------------------------------------- bad files

GOOD = {"src": "a", "tgt": "b"}
ERRORS = [  # (file name, content, line, what the message says)
    ("e.tsv", "a\tb\nno tab here\n", 2, "expected 'source<TAB>target' (one tab), found 0"),
    ("e.tsv", "a\tb\nx\ty\tz\n", 2, "found 2 tabs"),
    ("e.tsv", "a\tb\n\tb\n", 2, "the source side is empty"),
    ("e.tsv", "a\tb\n\n a\t  \n", 3, "the target side is empty"),
    ("e.tsv", "\t\n", 1, "the source side is empty"),
    ("e.tsv", b"a\tb\nc\t\xff\n", 2, "not valid UTF-8"),
    ("e.jsonl", [GOOD, {"src": "a"}], 2, "field 'tgt' is missing (fields: src)"),
    ("e.jsonl", [GOOD, {"text": "a", "label": 1}], 2,
     "field 'src' is missing (fields: text, label); expected 'src' and 'tgt', or "
     "'translation'"),
    ("e.jsonl", [GOOD, {"src": " ", "tgt": "b"}], 2, "field 'src' is empty"),
    ("e.jsonl", [GOOD, {"src": "a", "tgt": 3}], 2, "field 'tgt' is a number, expected a string"),
    ("e.jsonl", [{"translation": {"en": "a", "de": "b"}}], 1,
     "language 'zh' is not in 'translation' (languages: en, de)"),
    ("e.jsonl", [{"translation": {"zh": "a", "fr": "b"}}], 1,
     "language 'en' is not in 'translation' (languages: zh, fr)"),
    ("e.jsonl", [{"translation": ["a", "b"]}], 1, "field 'translation' is an array"),
    ("e.jsonl", [{"translation": {"en": "a", "zh": ""}}], 1, "field 'zh' is empty"),
    ("e.jsonl", [GOOD, '{"src": "a", "tgt": }'], 2, "invalid JSON"),
    ("e.jsonl", [GOOD, GOOD, '["a", "b"]'], 3, "expected a JSON object, got an array"),
    ("e.jsonl", [GOOD, '{"src": "\\ud800", "tgt": "b"}'], 2, "unpaired surrogate"),
]


@pytest.mark.parametrize("name,content,line,fragment", ERRORS,
                         ids=[f"{i}-{e[3][:24]}" for i, e in enumerate(ERRORS)])
def test_bad_file_names_file_and_line(tmp_path, name, content, line, fragment):
    p = (jsonl(tmp_path / name, *content) if isinstance(content, list)
         else write(tmp_path / name, content))
    msg = error(DataError, read_parallel, p, **LANGS)
    assert msg.startswith(f"{p}:line {line}: "), msg
    assert fragment in msg


@pytest.mark.parametrize("name", ["e.tsv", "e.jsonl"])
@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, name, content):
    p = write(tmp_path / name, content)
    assert error(DataError, read_parallel, p, **LANGS).startswith(f"{p}: empty file")


def test_text_pair_errors(tmp_path):
    src = write(tmp_path / "s.en", "a\nb\nc\n")
    short = write(tmp_path / "t.zh", "一\n二\n")
    msg = error(DataError, read_parallel, src, tgt_path=short, **LANGS)
    assert msg.startswith(f"{src} has 3 lines but {short} has 2; ")
    gap = write(tmp_path / "gap.zh", "一\n \n三\n")
    assert error(DataError, read_parallel, src, tgt_path=gap, **LANGS).startswith(
        f"{gap}:line 2: the line is empty")
    gap_src = write(tmp_path / "gap.en", "a\nb\n\n")
    full = write(tmp_path / "full.zh", "一\n二\n三\n")
    assert error(DataError, read_parallel, gap_src, tgt_path=full, **LANGS).startswith(
        f"{gap_src}:line 3: the line is empty")
    empty = write(tmp_path / "empty.zh", "")
    assert error(DataError, read_parallel, src, tgt_path=empty, **LANGS).startswith(
        f"{empty}: empty file")
    bad = write(tmp_path / "bad.zh", b"\xe4\xb8\x80\n\xe4\xb8\n")
    assert error(DataError, read_parallel, src, tgt_path=bad, **LANGS).startswith(
        f"{bad}:line 2: not valid UTF-8")
    missing = tmp_path / "missing.zh"
    assert f"cannot read {missing}" in error(DataError, read_parallel, src, tgt_path=missing,
                                             **LANGS)


def test_bad_arguments(tmp_path):
    tsv = write(tmp_path / "a.tsv", "a\tb\n")
    assert "format='xml' is not one of tsv, jsonl, text" in error(
        ConfigError, read_parallel, tsv, format="xml", **LANGS)
    assert "needs tgt_path" in error(ConfigError, read_parallel, tsv, format="text", **LANGS)
    assert "tgt_path is only for format='text'" in error(
        ConfigError, read_parallel, tsv, format="tsv", tgt_path=tsv, **LANGS)
    assert "src_lang must be a language code" in error(
        ConfigError, read_parallel, tsv, src_lang="", tgt_lang="zh")
    txt = write(tmp_path / "a.txt", "a\n")
    assert "give tgt_path" in error(ConfigError, read_parallel, txt, **LANGS)
    xml = write(tmp_path / "a.xml", "a\n")
    assert error(DataError, read_parallel, xml, **LANGS).startswith(
        f"{xml}: unknown suffix '.xml'")


# ----------------------------------------------------------------------------- writing


def test_bad_records_are_not_written(tmp_path):
    p = tmp_path / "out.tsv"
    write_parallel([GOOD], p)
    before = p.read_bytes()
    for records, fragment in [
        ([GOOD, {"src": "a\tb", "tgt": "c"}], "record 2: field 'src' holds a tab or line"),
        ([{"src": "a", "tgt": "line\nbreak"}], "record 1: field 'tgt' holds a tab or line"),
        ([{"src": "a"}], "record 1: field 'tgt' is missing (fields: src)"),
        ([{"src": "a", "tgt": "  "}], "record 1: field 'tgt' is empty"),
        ([{"src": "\udc80", "tgt": "b"}], "unpaired surrogate \\udc80"),
        ([("a", "b")], "record 1 is tuple, expected a dict"),
        ([], "no records"),
    ]:
        msg = error(DataError, write_parallel, records, p)
        assert msg.startswith(f"cannot write {p}") and fragment in msg, msg
    assert p.read_bytes() == before  # a refused write leaves the old file as it was
    assert [x.name for x in tmp_path.iterdir()] == ["out.tsv"]
    j = tmp_path / "out.jsonl"  # JSONL holds tabs and line breaks
    write_parallel([{"src": "a\tb", "tgt": "line\nbreak"}], j)
    assert strip(read_parallel(j, **LANGS)) == [("a\tb", "line\nbreak")]
    assert error(DataError, write_parallel, [GOOD], tmp_path / "o.csv").startswith(
        f"cannot write {tmp_path / 'o.csv'}: unknown suffix '.csv'")
