"""Bad input to the data readers and the commands that read user files (``data prepare``,
``tokenizer train``, ``evaluate --data``): one clear error naming the file and line, exit
code 2, no traceback, nothing silently skipped, duplicated or half-written. Each test
here once failed: a traceback, a wrong or misleading message, or wrong input accepted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes import TEXT, assert_user_error, run_cli, tiny_gpt_folder

from lmforge.data.readers import iter_documents
from lmforge.errors import DataError


def read_error(inputs, **kw) -> str:
    """The one-line DataError message that reading ``inputs`` raises."""
    with pytest.raises(DataError) as e:
        list(iter_documents(inputs, **kw))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def texts(inputs, **kw) -> list[str]:
    return [d.text for d in iter_documents(inputs, **kw)]


def tok_train(path, out) -> list[str]:
    return ["tokenizer", "train", str(path), "--out", str(out), "--kind", "char",
            "--vocab-size", "60"]


# ----------------------------------------------------------------------------- JSONL

def test_jsonl_nested_too_deeply_is_an_error_with_line(tmp_path, capsys):
    p = tmp_path / "deep.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "x", "meta": ' + "[" * 100_000 + "\n",
                 encoding="utf-8")
    assert_user_error(tok_train(p, tmp_path / "tok"), capsys, f"{p}:line 2",
                      "invalid JSON", "nested too deeply")


def test_jsonl_huge_integer_is_an_error_with_line(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text('{"text": "a", "n": ' + "9" * 5000 + "}\n", encoding="utf-8")
    msg = read_error([p])
    assert f"{p}:line 1: invalid JSON" in msg and "set_int_max_str_digits" not in msg


def test_jsonl_lone_surrogate_escape_is_an_error(tmp_path, capsys):
    ok = tmp_path / "pair.jsonl"
    ok.write_text('{"text": "smile \\ud83d\\ude00"}\n', encoding="utf-8")
    assert texts([ok]) == ["smile \U0001F600"]  # a proper pair is one character
    p = tmp_path / "cut.jsonl"
    p.write_text('{"text": "fine"}\n{"text": "half an emoji \\uD83D"}\n', encoding="utf-8")
    assert_user_error(tok_train(p, tmp_path / "tok"), capsys, f"{p}:line 2", "'text'",
                      "\\ud83d", "not valid Unicode")


def test_jsonl_type_errors_use_json_names(tmp_path):
    p = tmp_path / "arr.jsonl"
    p.write_text('{"text": "a"}\n["text", "b"]\n', encoding="utf-8")
    assert read_error([p]).endswith(f"{p}:line 2: expected a JSON object, got an array")
    q = tmp_path / "num.jsonl"
    q.write_text('{"text": 3}\n', encoding="utf-8")
    assert "field 'text' is a number, expected a string" in read_error([q])


# ----------------------------------------------------------------------------- CSV

def test_csv_unclosed_quote_is_an_error_not_data(tmp_path, capsys):
    p = tmp_path / "cut.csv"  # a file truncated inside a quoted field
    p.write_text('id,text\n1,"two\nlines"\n2,plain\n3,"cut off here\nand more\n',
                 encoding="utf-8")
    assert_user_error(tok_train(p, tmp_path / "tok"), capsys, f"{p}:line 5",
                      "quoted field is not closed")


def test_csv_text_after_closing_quote_is_an_error(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('id,text\n1,"a"b\n', encoding="utf-8")
    assert f"{p}:line 2: malformed CSV" in read_error([p])


def test_csv_duplicate_column_is_an_error(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("text,id,text\na,1,b\n", encoding="utf-8")
    msg = read_error([p])
    assert str(p) in msg and "'text' appears 2 times" in msg


def test_csv_errors_give_the_line_where_the_record_starts(tmp_path):
    p = tmp_path / "rag.csv"
    p.write_text('id,text\n1,ok\n2,"a\nb\nc",extra\n', encoding="utf-8")
    assert f"{p}:line 3: row has 3 fields, the header has 2" in read_error([p])
    q = tmp_path / "multi.csv"
    q.write_text('id,text\n1,"a\nb"\n2,c\n', encoding="utf-8")
    assert [d.source for d in iter_documents([q])] == [f"{q}:line 2", f"{q}:line 4"]


def test_csv_header_and_line_ending_messages(tmp_path):
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"id,text\r1,a\r2,b\r")
    msg = read_error([mac])
    assert "carriage return" in msg and "universal-newline" not in msg
    blank = tmp_path / "blank_header.csv"
    blank.write_text("\nid,text\n1,a\n", encoding="utf-8")
    assert f"{blank}:line 1: the header row is empty" in read_error([blank])


# ----------------------------------------------------------------------------- Parquet

def test_parquet_corrupt_data_pages_are_an_error(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 5 for i in range(3000)]}), p,
                   compression="snappy", row_group_size=1000)
    data = bytearray(p.read_bytes())
    data[100:20_000] = b"\x55" * 19_900  # the footer (schema) stays intact
    p.write_bytes(bytes(data))
    assert_user_error(tok_train(p, tmp_path / "tok"), capsys, str(p), "is corrupt")


def test_parquet_dictionary_string_column_is_read(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "cat.parquet"  # e.g. a pandas category column
    pq.write_table(pa.table({"text": pa.array(["a", "b", "a"]).dictionary_encode()}), p)
    assert texts([p]) == ["a", "b", "a"]


# ----------------------------------------------------------------------------- paths

def test_empty_input_path_does_not_read_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "secret.txt").write_text("not meant as data\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert read_error([""]) == "input path is empty"
    assert_user_error(tok_train("", tmp_path / "tok"), capsys, "input path is empty")


def test_links_and_special_files_are_named_for_what_they_are(tmp_path):
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    msg = read_error([tmp_path / "a.txt"])
    assert "cannot read" in msg and "symbolic links" in msg
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    assert "broken symbolic link" in read_error([tmp_path / "gone.txt"])
    os.mkfifo(tmp_path / "pipe.txt")
    assert "not a regular file or folder" in read_error([tmp_path / "pipe.txt"])


def test_folder_follows_linked_folders_once(tmp_path):
    root, other = tmp_path / "corpus", tmp_path / "other"
    (root / "sub").mkdir(parents=True)
    other.mkdir()
    (root / "a.txt").write_text("a\n", encoding="utf-8")
    (other / "b.txt").write_text("b\n", encoding="utf-8")
    (root / "linked").symlink_to(other)       # data kept elsewhere: must be read
    (root / "sub" / "up").symlink_to(root)    # a loop: must not repeat anything
    assert texts([root]) == ["a", "b"]


def test_unreadable_subfolder_is_an_error_not_skipped(tmp_path, monkeypatch):
    (tmp_path / "d" / "locked").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "d" / "locked" / "b.txt").write_text("b\n", encoding="utf-8")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root reads everything, so simulate it
    msg = read_error([tmp_path / "d"])
    assert f"cannot read folder {tmp_path / 'd' / 'locked'}: Permission denied" in msg


def test_recursive_glob_reads_each_file_once(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "d" / "sub" / "c.txt").write_text("c\n", encoding="utf-8")
    assert texts([str(tmp_path / "d" / "**")]) == ["a", "c"]


def test_prepare_with_non_utf8_file_name(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 file name: "\udce9" in Python
    (tmp_path / name).write_text(TEXT * 3, encoding="utf-8")
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(tmp_path / name), "--out", str(out),
                            "--kind", "char", "--vocab-size", "60"], capsys)
    assert code == 0, err
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["inputs"] == [str(tmp_path / name)]


# ----------------------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory) -> Path:
    return tiny_gpt_folder(tmp_path_factory.mktemp("gpt") / "model")


def test_evaluate_jsonl_with_byte_order_mark(gpt_folder, tmp_path, capsys):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "hello world", "bits": 30}\n'
                  b'{"text": "  ", "bits": 99}\n{"text": "line of text", "bits": 40}\n')
    code, out, err = run_cli(["evaluate", str(gpt_folder), "--data", str(p)], capsys)
    assert code == 0, err
    assert "documents: 2" in out and "true 35.0" in out


# ----------------------------------------------------------------------------- shards

@pytest.mark.parametrize("damage, fragment", [
    (lambda m: m.pop("splits"), "splits is missing"),
    (lambda m: m.update(dtype="float77"), "dtype is 'float77'"),
    (lambda m: m["splits"]["train"].pop("shards"), "splits.train.shards is missing"),
    (lambda m: m["splits"]["train"]["shards"][0].update(tokens="7"),
     "splits.train.shards[0].tokens is '7'"),
    (lambda m: m["splits"]["train"]["shards"][0].update(file="../x.bin"),
     "splits.train.shards[0].file is '../x.bin'"),
])
def test_damaged_prepared_data_meta(tmp_path, damage, fragment):
    from lmforge.data.shards import ShardWriter, TokenShards, write_meta

    w = ShardWriter(tmp_path, "train", "uint16")
    w.add_document([1, 2, 3])
    write_meta(tmp_path, dtype="uint16", vocab_size=8, splits={"train": w.close()})
    assert TokenShards(tmp_path, "train").tokens == 3
    meta = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    damage(meta)
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DataError) as e:
        TokenShards(tmp_path, "train")
    assert f"{tmp_path / 'meta.json'} is corrupt" in str(e.value)
    assert fragment in str(e.value)
