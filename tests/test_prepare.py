"""prepare_data: shards that decode back to the cleaned text, a deterministic
order-independent split, atomic output, clear errors and constant memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lmforge.data.clean import clean_text
from lmforge.data.prepare import prepare_data, split_value
from lmforge.data.shards import TokenShards, read_meta
from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.tokenize import Tokenizer

ZH = "机器 学习 语言 模型 数据 今天 天气 我们 城市 世界 音乐 朋友 故事 时间 问题".split()
EN = "the model learns language from data and the city has music in the morning".split()


def corpus_lines(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct synthetic lines, alternately English and Chinese."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 12, n).tolist()
    words = rng.integers(0, len(ZH), (n, 14)).tolist()
    lines = []
    for i, (k, w) in enumerate(zip(lengths, words, strict=True)):
        if i % 2:
            lines.append("".join(ZH[j] for j in w[:k]) + "，" + "".join(ZH[j] for j in w[k:k + 3])
                         + f"{seed}-{i}。")
        else:
            lines.append(" ".join(EN[j % len(EN)] for j in w[:k]) + f" {seed}-{i}.")
    return lines


def write_corpus(tmp_path, n=300):
    lines = corpus_lines(n)
    (tmp_path / "a.txt").write_text("\n".join(lines[: n // 2]) + "\n", encoding="utf-8")
    with open(tmp_path / "b.jsonl", "w", encoding="utf-8") as f:
        for line in lines[n // 2:]:
            f.write(json.dumps({"text": f"<p>{line}</p>　"}, ensure_ascii=False) + "\n")
    return lines


def documents(data_dir, split):
    """Split a split's tokens back into documents ([bos] ids [eos] each)."""
    meta = read_meta(data_dir)
    ids = np.concatenate([np.fromfile(data_dir / s["file"], dtype=meta["dtype"])
                          for s in meta["splits"][split]["shards"]] or [np.zeros(0, int)])
    bos, eos = meta["bos_id"], meta["eos_id"]
    starts = np.flatnonzero(ids == bos)
    docs = []
    for a, b in zip(starts, list(starts[1:]) + [ids.size], strict=True):
        assert ids[b - 1] == eos
        docs.append(ids[a + 1: b - 1].tolist())
    return docs


SPEC = {"kind": "bpe", "vocab_size": 400, "min_frequency": 2}


def test_prepare_round_trip(tmp_path):
    lines = write_corpus(tmp_path)
    out = tmp_path / "out"
    meta = prepare_data([tmp_path / "a.txt", tmp_path / "b.jsonl"], out, tokenizer_spec=SPEC,
                        val_fraction=0.1, shard_tokens=2000, show_progress=False)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 400
    assert sorted(p.name for p in out.iterdir())[:3] == ["meta.json", "tokenizer.json",
                                                         "tokenizer_config.json"]
    assert json.loads((out / "meta.json").read_text(encoding="utf-8")) == meta
    assert len(meta["splits"]["train"]["shards"]) > 1  # shard_tokens caps a shard
    tok = Tokenizer.load(out)
    assert tok.kind == "bpe" and meta["bos_id"] == tok.bos_id == 0 and meta["eos_id"] == 1
    decoded = {s: [tok.decode(d) for d in documents(out, s)] for s in ("train", "val")}
    assert meta["documents"]["kept"] == len(lines) == sum(map(len, decoded.values()))
    assert meta["splits"]["val"]["documents"] == len(decoded["val"]) > 0
    assert sorted(decoded["train"] + decoded["val"]) == sorted(clean_text(t) for t in lines)
    for s, docs in decoded.items():  # the split is by document, and follows the hash rule
        for d in docs:
            assert (split_value(d, 0) < 0.1) == (s == "val")
    x, y = TokenShards(out, "train").sample(4, 16, np.random.default_rng(0))
    assert x.shape == (4, 16) and (x[:, 1:] == y[:, :-1]).all()


def test_prepare_is_deterministic_and_order_independent(tmp_path):
    lines = corpus_lines(200)
    (tmp_path / "fwd.txt").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "rev.txt").write_text("\n".join(reversed(lines)), encoding="utf-8")
    kw = dict(tokenizer_spec=SPEC, val_fraction=0.2, seed=7, show_progress=False)
    prepare_data([tmp_path / "fwd.txt"], tmp_path / "o1", **kw)
    prepare_data([tmp_path / "fwd.txt"], tmp_path / "o2", **kw)
    names = sorted(p.name for p in (tmp_path / "o1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "o2").iterdir())
    for name in names:
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    prepare_data([tmp_path / "rev.txt"], tmp_path / "o3", **kw)
    tok = Tokenizer.load(tmp_path / "o1")
    for split in ("train", "val"):
        a = {tok.decode(d) for d in documents(tmp_path / "o1", split)}
        b = {tok.decode(d) for d in documents(tmp_path / "o3", split)}
        assert a == b and a
    kw["seed"] = 8
    prepare_data([tmp_path / "fwd.txt"], tmp_path / "o4", **kw)
    other = {tok.decode(d) for d in documents(tmp_path / "o4", "val")}
    assert other != {tok.decode(d) for d in documents(tmp_path / "o1", "val")}


def test_val_and_train_are_never_left_empty(tmp_path):
    tok_dir = tmp_path / "tok"
    prepare_data(None, tok_dir, texts=corpus_lines(50), tokenizer_spec=SPEC,
                 show_progress=False)
    tok = Tokenizer.load(tok_dir)
    two = ["first document", "second document"]
    small = min(two, key=lambda t: split_value(t, 0))
    meta = prepare_data(None, tmp_path / "a", texts=two, tokenizer=tok, val_fraction=1e-9,
                        show_progress=False)
    assert meta["splits"]["val"]["documents"] == 1 == meta["splits"]["train"]["documents"]
    assert [tok.decode(d) for d in documents(tmp_path / "a", "val")] == [small]
    meta = prepare_data(None, tmp_path / "b", texts=two, tokenizer=tok, val_fraction=0.999999,
                        show_progress=False)
    assert meta["splits"]["val"]["documents"] == 1 == meta["splits"]["train"]["documents"]
    meta = prepare_data(None, tmp_path / "c", texts=two, tokenizer=tok, val_fraction=0.0,
                        show_progress=False)
    assert meta["splits"]["val"]["documents"] == 0 and meta["splits"]["train"]["documents"] == 2
    with pytest.raises(DataError, match="empty"):
        TokenShards(tmp_path / "c", "val")
    meta = prepare_data(None, tmp_path / "d", texts=["only one"], tokenizer=tok_dir,
                        show_progress=False)
    assert meta["splits"]["train"]["documents"] == 1


def test_dedup_clean_and_texts(tmp_path):
    tok = Tokenizer.load(_tokenizer_dir(tmp_path))
    texts = ["<b>重复</b> text", "重复 text", "other　text", "<b>重复</b> text", "  ", "<br>"]
    meta = prepare_data(None, tmp_path / "a", texts=texts, tokenizer=tok, show_progress=False)
    assert meta["documents"] == {"read": 6, "empty_after_cleaning": 2, "duplicates": 2,
                                 "kept": 2}
    meta = prepare_data(None, tmp_path / "b", texts=iter(texts), tokenizer=tok, dedup=False,
                        clean=False, show_progress=False)
    assert meta["documents"]["kept"] == 5  # only the blank one is dropped
    got = {tok.decode(d) for s in ("train", "val") for d in documents(tmp_path / "b", s)}
    assert got == {"<b>重复</b> text", "重复 text", "other　text", "<br>"}
    with pytest.raises(ConfigError, match="one-shot iterator"):
        prepare_data(None, tmp_path / "c", texts=iter(texts), tokenizer_spec=SPEC)


def test_clean_options_keep_code_intact(tmp_path):
    tok = Tokenizer.load(_tokenizer_dir(tmp_path))
    code = "def f(a, b):\n    if a<b>0:\n        return  a\n"
    meta = prepare_data(None, tmp_path / "code", texts=[code, "x = 1\n"], tokenizer=tok,
                        clean={"whitespace": False, "strip_html": False}, show_progress=False)
    assert meta["clean"] == {"whitespace": False, "strip_html": False}
    got = {tok.decode(d) for s in ("train", "val") for d in documents(tmp_path / "code", s)}
    assert got == {code, "x = 1\n"}
    with pytest.raises(ConfigError, match="unknown option 'html'"):
        prepare_data(None, tmp_path / "x", texts=[code], tokenizer=tok, clean={"html": False})


def _tokenizer_dir(tmp_path):
    d = tmp_path / "tok"
    if not d.exists():
        prepare_data(None, d, texts=corpus_lines(60) + ["<b>重复</b> other"],
                     tokenizer_spec=SPEC, show_progress=False)
    return d


def test_uint32_for_large_vocabularies(tmp_path):
    chars = ([chr(c) for c in range(0x4E00, 0x9FFF)] + [chr(c) for c in range(0x3400, 0x4DBF)]
             + [chr(c) for c in range(0x20000, 0x2A6DF)])
    texts = ["".join(chars[i:i + 500]) for i in range(0, len(chars), 500)]
    meta = prepare_data(None, tmp_path / "big", texts=texts, show_progress=False,
                        tokenizer_spec={"kind": "char", "vocab_size": 100_000,
                                        "min_frequency": 1})
    assert meta["vocab_size"] > 65536 and meta["dtype"] == "uint32"
    tok = Tokenizer.load(tmp_path / "big")
    docs = [tok.decode(d) for s in ("train", "val") for d in documents(tmp_path / "big", s)]
    assert sorted(docs) == sorted(texts)
    meta = prepare_data(None, tmp_path / "small", texts=texts[:2], show_progress=False,
                        tokenizer_spec={"kind": "char", "vocab_size": 65536,
                                        "min_frequency": 1})
    assert meta["dtype"] == "uint16"


def test_errors(tmp_path):
    def one_line(e):
        assert "\n" not in str(e.value)
        return str(e.value)

    with pytest.raises(DataError) as e:
        prepare_data([tmp_path / "missing.txt"], tmp_path / "o")
    assert one_line(e) == f"input not found: {tmp_path / 'missing.txt'}"
    (tmp_path / "blank.txt").write_text("<p></p>\n \n&nbsp;\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        prepare_data([tmp_path / "blank.txt"], tmp_path / "o", tokenizer_spec=SPEC,
                     show_progress=False)
    assert one_line(e) == f"empty corpus: no documents in {tmp_path / 'blank.txt'}"
    with pytest.raises(DataError, match="empty corpus"):
        prepare_data([tmp_path / "blank.txt"], tmp_path / "o",
                     tokenizer=_tokenizer_dir(tmp_path), show_progress=False)
    bad = tmp_path / "gbk.txt"
    bad.write_bytes(b"fine line\n" + "中文".encode("gbk") + b"\n")
    with pytest.raises(DataError) as e:
        prepare_data([bad], tmp_path / "o", tokenizer_spec=SPEC, show_progress=False)
    assert str(bad) in one_line(e) and "byte offset 10" in str(e.value)
    with pytest.raises(ConfigError) as e:
        prepare_data([bad], tmp_path / "o", tokenizer_spec={"kind": "bpe", "vocab_size": 100})
    assert "tokenizer.vocab_size=100 is too small" in one_line(e)
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare_data([bad], tmp_path / "o", val_fraction=1.0)
    assert not (tmp_path / "o").exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(DataError, match="refusing"):
        prepare_data([bad], tmp_path / "mine")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(LmforgeError, match="not writable"):
        prepare_data([tmp_path / "blank.txt"], tmp_path / "afile" / "out")


def test_rerun_replaces_a_prepared_folder(tmp_path):
    tok = _tokenizer_dir(tmp_path)
    out = tmp_path / "out"
    prepare_data(None, out, texts=["one", "two", "three"], tokenizer=tok, show_progress=False)
    meta = prepare_data(None, out, texts=["four", "five"], tokenizer=tok, show_progress=False)
    assert meta["documents"]["kept"] == 2 == read_meta(out)["documents"]["kept"]


_CHILD = textwrap.dedent("""
    import json, resource, sys
    from lmforge.data.prepare import prepare_data
    prepare_data([sys.argv[1]], sys.argv[2], tokenizer_spec={"kind": "bpe", "vocab_size": 512},
                              tokenizer_train_bytes=2**19, show_progress=False)
    print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


@pytest.mark.slow  # 10 s of corpus writing and two prepares: the default suite's budget is spent
def test_memory_does_not_grow_with_corpus_size(tmp_path):
    peaks = {}
    for mb in (2, 7):
        path = tmp_path / f"c{mb}.txt"
        with open(path, "w", encoding="utf-8") as f:
            seed = 0
            while f.tell() < mb * 1_000_000:
                f.write("\n".join(corpus_lines(20_000, seed)) + "\n")
                seed += 1
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(tmp_path / f"o{mb}")],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        peaks[mb] = json.loads(res.stdout.strip().splitlines()[-1])["peak_kb"] / 1024
    # Measured: about 5 MB (allocator and tokenizer-cache warm-up, and the dedup table).
    assert peaks[7] - peaks[2] < 20, peaks


def test_cli_val_fraction_zero_means_no_validation_split(tmp_path, capsys):
    from fakes import assert_user_error, run_cli

    src = tmp_path / "c.txt"
    src.write_text("\n".join(corpus_lines(40)), encoding="utf-8")
    code, _, err = run_cli(["data", "prepare", str(src), "--out", str(tmp_path / "o"),
                            "--kind", "char", "--val-fraction", "0"], capsys)
    assert code == 0, err
    meta = read_meta(tmp_path / "o")
    assert meta["splits"]["val"]["documents"] == 0 and meta["splits"]["train"]["documents"] > 0
    assert_user_error(["data", "prepare", str(src), "--out", str(tmp_path / "p"),
                       "--val-fraction", "1"], capsys, "--val-fraction must be in [0, 1)")
