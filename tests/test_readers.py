"""Streaming readers: formats, folders and globs, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from lmforge.data.readers import Document, iter_documents, iter_lines, resolve_inputs
from lmforge.errors import ConfigError, DataError


def texts(inputs, **kw):
    return [d.text for d in iter_documents(inputs, **kw)]


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_txt_modes(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\ufeff第一行 line one\r\n\n  \nline two\nsecond para\n\n\nlast", encoding="utf-8")
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["第一行 line one", "line two", "second para", "last"]
    assert docs[0].source == f"{p}:line 1" and docs[1].source == f"{p}:line 4"
    assert texts([p], txt_mode="paragraph") == ["第一行 line one", "line two\nsecond para",
                                                "last"]
    assert texts([p], txt_mode="file") == [p.read_bytes().decode("utf-8-sig")]
    with pytest.raises(ConfigError):
        iter_documents([p], txt_mode="sentence")


def test_lines_split_only_on_newline_and_across_chunks(tmp_path):
    p = tmp_path / "a.txt"
    text = "你好\u2028世界\x0cx\n" * 50 + "尾"
    p.write_text(text, encoding="utf-8")
    lines = list(iter_lines(p, chunk_bytes=7))  # chunks split multi-byte characters
    assert "".join(lines) == text
    assert len(lines) == 51 and lines[0] == "你好\u2028世界\x0cx\n"


def test_lines_longer_than_many_chunks(tmp_path):
    """A line spanning hundreds of chunks comes back whole (its pieces are kept in a
    list and joined once), with the lines around it intact."""
    p = tmp_path / "long.txt"
    text = "first\n" + "长" * 3000 + "x" * 1001 + "\nlast"
    p.write_text(text, encoding="utf-8")
    assert list(iter_lines(p, chunk_bytes=5)) == ["first\n", "长" * 3000 + "x" * 1001 + "\n",
                                                  "last"]


def test_jsonl(tmp_path):
    p = tmp_path / "a.jsonl"
    rows = [{"text": "你好", "id": 1}, {"text": "hello"}, {"text": None}, {"content": "x",
                                                                       "text": " "}]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n",
                 encoding="utf-8")
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["你好", "hello"]
    assert docs[1].source == f"{p}:line 2"
    q = tmp_path / "b.jsonl"
    q.write_text('{"content": "a"}\n', encoding="utf-8")
    assert texts([q], field="content") == ["a"]
    with pytest.raises(DataError) as e:
        list(iter_documents([q]))
    assert f"{q}:line 1" in one_line(e) and "'text' is missing" in str(e.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(iter_documents([bad]))
    assert f"{bad}:line 2" in one_line(e) and "invalid JSON" in str(e.value)
    num = tmp_path / "num.jsonl"
    num.write_text('{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match="expected a string"):
        list(iter_documents([num]))


def test_csv(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('id,text\n1,"多行\n文本, with comma"\n2,plain\n3,\n', encoding="utf-8")
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["多行\n文本, with comma", "plain"]
    assert texts([p], column="id") == ["1", "2", "3"]
    with pytest.raises(DataError) as e:
        list(iter_documents([p], column="body"))
    msg = one_line(e)
    assert str(p) in msg and "'body' not found" in msg and "columns: id, text" in msg


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["你好", None, "world"], "n": [1, 2, 3]}), p)
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["你好", "world"]
    assert docs[1].source == f"{p}:row 3"
    with pytest.raises(DataError) as e:
        list(iter_documents([p], column="body"))
    assert "columns: text, n" in one_line(e)
    with pytest.raises(DataError, match="expected a string"):
        list(iter_documents([p], column="n"))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(DataError) as e:
        list(iter_documents([junk]))
    assert str(junk) in one_line(e)


def test_folders_and_globs_are_sorted(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("b\n", encoding="utf-8")
    (tmp_path / "d" / "a.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "d" / "sub" / "c.jsonl").write_text('{"text": "c"}\n', encoding="utf-8")
    (tmp_path / "d" / "notes.md").write_text("ignored\n", encoding="utf-8")
    (tmp_path / "d" / ".hidden.txt").write_text("hidden\n", encoding="utf-8")
    assert texts([tmp_path / "d"]) == ["a", "b", "c"]
    assert texts([str(tmp_path / "d" / "*.txt")]) == ["a", "b"]
    assert [p.name for p in resolve_inputs(str(tmp_path / "d" / "**" / "*.jsonl"))] == [
        "c.jsonl"]


def test_input_errors(tmp_path):
    with pytest.raises(DataError) as e:
        iter_documents([tmp_path / "nope.txt"])
    assert one_line(e) == f"input not found: {tmp_path / 'nope.txt'}"
    with pytest.raises(DataError, match="matches no files"):
        iter_documents([str(tmp_path / "*.jsonl")])
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(DataError) as e:
        iter_documents([tmp_path / "x.docx"])
    assert "unsupported input file" in one_line(e) and ".jsonl" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no"):
        iter_documents([tmp_path / "empty"])


def test_invalid_utf8_reports_byte_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    good = "好".encode() * 400_000 + b"ok\n"  # 1.2 MB: the bad byte lies in the 2nd chunk
    p.write_bytes(good + "café".encode("latin-1") + b"\n")
    it = iter_documents([p])
    assert next(it).text.startswith("好")
    with pytest.raises(DataError) as e:
        list(it)
    msg = one_line(e)
    assert str(p) in msg and f"byte offset {len(good) + 3}" in msg and "0xe9" in msg
    # a truncated multi-byte sequence at the end of the file
    q = tmp_path / "cut.jsonl"
    q.write_bytes(b'{"text": "a"}\n' + "好".encode()[:2])
    with pytest.raises(DataError, match="byte offset 14"):
        list(iter_documents([q]))


def test_document_is_a_value():
    assert Document("a", "f:line 1") == Document("a", "f:line 1")
