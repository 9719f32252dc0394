"""Bad input to the CLI: one ``error:`` line on stderr, exit code 2, no traceback, and
nothing half-written. Each test here once produced a traceback, a wrong exit code or a
misleading message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fakes import TEXT, assert_user_error, run_cli, tiny_gpt_folder

from lmforge.models.bert import BertConfig, BertModel
from lmforge.tokenize import train_tokenizer

# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory) -> Path:
    return tiny_gpt_folder(tmp_path_factory.mktemp("gpt") / "model")


@pytest.fixture
def gpt_copy(gpt_folder, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(gpt_folder, dst)
    return dst


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder trained for 2 steps through the CLI (a few seconds)."""
    root = tmp_path_factory.mktemp("run")
    (root / "corpus.txt").write_text(TEXT * 50, encoding="utf-8")
    threads = torch.get_num_threads()
    code, _, _ = run_cli(["pretrain", "quickstart", "--no-progress",
                          *_tiny_sets(root / "corpus.txt", root / "run", steps=2)])
    torch.set_num_threads(threads)
    assert code == 0
    return root / "run"


def _tiny_sets(corpus: Path, out: Path, steps: int) -> list[str]:
    sets = {"train.max_steps": steps, "data.corpus": "null", "data.inputs": f"[{corpus}]",
            "tokenizer.kind": "char", "tokenizer.vocab_size": 60, "model.n_layer": 1,
            "model.d_model": 16, "model.n_head": 2, "model.max_seq_len": 16,
            "train.batch_size": 2, "train.block_size": 16, "train.eval_every": 1,
            "train.ckpt_every": 1, "train.eval_batches": 1, "train.threads": 1,
            "run.out_dir": out}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


def _ckpt(run: Path) -> Path:
    return sorted((run / "checkpoints").iterdir())[-1]


def _resume_args(tiny_run: Path, run: Path) -> list[str]:
    """``pretrain --resume`` of the copy ``run`` of ``tiny_run``, with the same recipe."""
    return ["pretrain", "quickstart", "--no-progress", "--resume",
            *_tiny_sets(tiny_run.parent / "corpus.txt", run, steps=3)]


@pytest.fixture
def bert_folder(tmp_path) -> Path:
    tok = train_tokenizer("wordpiece", texts=["你好世界 hello world again"] * 5,
                          vocab_size=40, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16,
                         max_position=32, head="mlm")).save_pretrained(tmp_path / "bert")
    tok.save(tmp_path / "bert")
    return tmp_path / "bert"


@pytest.fixture
def vectors(tmp_path) -> Path:
    p = tmp_path / "v.txt"
    p.write_text("3 2\nParis 1 0\nFrance 0 1\nTokyo 1 1\n", encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- recipes

def test_recipe_without_model_section_uses_the_default_gpt(tmp_path, capsys):
    from lmforge.config import load_recipe

    r = tmp_path / "r.yaml"
    r.write_text("train:\n  max_steps: 2\n", encoding="utf-8")
    assert load_recipe(r).arch == "gpt"
    # the first problem reported is the real one (the input), not "no architecture uses dict"
    r.write_text(f"data: {{inputs: [{tmp_path / 'missing.txt'}]}}\n"
                 f"run: {{out_dir: {tmp_path / 'run'}}}\n", encoding="utf-8")
    assert_user_error(["pretrain", str(r), "--no-progress"], capsys, "missing.txt",
                      not_in=("architecture",))


def test_recipe_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "recipes").mkdir()
    assert_user_error(["pretrain", str(tmp_path / "recipes")], capsys, "is a folder")


def test_recipe_with_a_list_as_arch(tmp_path, capsys):
    r = tmp_path / "r.yaml"
    r.write_text("model: {arch: [gpt]}\n", encoding="utf-8")
    assert_user_error(["pretrain", str(r)], capsys, "model.arch", "allowed: ")


# ----------------------------------------------------------------------------- model folders

@pytest.mark.parametrize("text", ["[1, 2]", '"gpt"', "3"])
def test_config_json_that_is_not_an_object(gpt_copy, capsys, text):
    (gpt_copy / "config.json").write_text(text, encoding="utf-8")
    assert_user_error(["generate", str(gpt_copy), "--prompt", "hi", "--max-new-tokens", "2"],
                      capsys, "config.json", "corrupt")


def test_config_json_with_an_unknown_arch_names_the_file(gpt_copy, capsys):
    cfg = json.loads((gpt_copy / "config.json").read_text(encoding="utf-8"))
    cfg["arch"] = "nope"
    (gpt_copy / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    assert_user_error(["generate", str(gpt_copy), "--prompt", "hi"], capsys,
                      str(gpt_copy / "config.json"), "'nope'", "allowed: ")


@pytest.mark.parametrize("meta", [[1], {"sha256": "abc"}, {"sha256": [1]}])
def test_lmforge_json_of_the_wrong_shape(gpt_copy, capsys, meta):
    (gpt_copy / "lmforge.json").write_text(json.dumps(meta), encoding="utf-8")
    assert_user_error(["generate", str(gpt_copy), "--prompt", "hi", "--max-new-tokens", "2"],
                      capsys, "lmforge.json", "corrupt")


def test_model_folder_without_a_tokenizer(gpt_copy, capsys):
    (gpt_copy / "tokenizer.json").unlink()
    assert_user_error(["generate", str(gpt_copy), "--prompt", "hi", "--max-new-tokens", "2"],
                      capsys, str(gpt_copy), "no tokenizer")


def test_generate_library_refuses_a_missing_tokenizer(gpt_folder):
    from lmforge.errors import LmforgeError
    from lmforge.generate import generate
    from lmforge.hub import load_pretrained

    model, _ = load_pretrained(gpt_folder)
    with pytest.raises(LmforgeError, match="tokenizer"):
        generate(model, None, "hi", max_new_tokens=2)


def test_viz_attention_max_tokens_below_one(gpt_folder, tmp_path, capsys):
    assert_user_error(["viz", "attention", str(gpt_folder), "--text", "hello", "--out",
                       str(tmp_path / "v"), "--max-tokens", "0"], capsys, "max_tokens")
    assert not (tmp_path / "v").exists()


# ----------------------------------------------------------------------------- Hugging Face folders

@pytest.fixture(scope="module")
def hf_folder(gpt_folder, tmp_path_factory) -> Path:
    from lmforge.convert import convert

    return convert(gpt_folder, tmp_path_factory.mktemp("hf") / "hf", to="hf")


@pytest.fixture
def hf_copy(hf_folder, tmp_path) -> Path:
    dst = tmp_path / "hf"
    shutil.copytree(hf_folder, dst)
    return dst


@pytest.mark.parametrize("text", ["[]", "{not json"])
def test_convert_corrupt_hf_config_is_not_called_an_lmforge_model(hf_copy, tmp_path, capsys,
                                                                   text):
    (hf_copy / "config.json").write_text(text, encoding="utf-8")
    assert_user_error(["convert", str(hf_copy), str(tmp_path / "out"), "--to", "lmforge"],
                      capsys, "config.json", "corrupt", not_in=("already",))
    assert not (tmp_path / "out").exists()


def test_convert_hf_config_without_model_type(hf_copy, tmp_path, capsys):
    (hf_copy / "config.json").write_text('{"n_layer": 1}', encoding="utf-8")
    assert_user_error(["convert", str(hf_copy), str(tmp_path / "out"), "--to", "lmforge"],
                      capsys, "model_type", not_in=("already",))


def test_convert_hf_config_with_a_wrong_type(hf_copy, tmp_path, capsys):
    cfg = json.loads((hf_copy / "config.json").read_text(encoding="utf-8"))
    cfg["n_embd"] = "wide"
    (hf_copy / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    assert_user_error(["convert", str(hf_copy), str(tmp_path / "out"), "--to", "lmforge"],
                      capsys, "config.json", "'wide'")
    assert not (tmp_path / "out").exists()


def test_garbage_pytorch_model_bin_gives_no_unsafe_advice(hf_copy, tmp_path, capsys):
    (hf_copy / "model.safetensors").unlink()
    (hf_copy / "pytorch_model.bin").write_bytes(b"\x80\x02ccopy_reg\nobviously not torch")
    _, line = assert_user_error(["convert", str(hf_copy), str(tmp_path / "out"),
                                 "--to", "lmforge"], capsys, "pytorch_model.bin", "corrupt")
    assert "weights_only" not in line


# ----------------------------------------------------------------------------- resuming a run

@pytest.mark.parametrize("key,value", [("step", "x"), ("sha256", [1]), ("seed", None),
                                       ("tokens_seen", "many")])
def test_resume_from_a_damaged_trainer_state(tiny_run, run_copy, capsys, key, value):
    f = _ckpt(run_copy) / "trainer_state.json"
    state = json.loads(f.read_text(encoding="utf-8"))
    state[key] = value
    f.write_text(json.dumps(state), encoding="utf-8")
    assert_user_error(_resume_args(tiny_run, run_copy), capsys, "trainer_state.json", key)


@pytest.mark.parametrize("content", [b"a: b: c\n", b"\xff\xfe"])
def test_resume_with_a_damaged_run_config_yaml(tiny_run, run_copy, capsys, content):
    (run_copy / "config.yaml").write_bytes(content)
    assert_user_error(_resume_args(tiny_run, run_copy), capsys, "config.yaml")


# ----------------------------------------------------------------------------- embed-text

@pytest.mark.parametrize("name,content,fragment", [
    ("config.json", "[1]", "config.json"),
    ("modules.json", '{"a": 1}', "modules.json"),
    ("modules.json", "[1]", "modules.json"),
    ("sentence_bert_config.json", "[1]", "sentence_bert_config.json"),
    ("sentence_bert_config.json", '{"max_seq_length": "x"}', "max_seq_length"),
])
def test_embed_text_damaged_model_folder(bert_folder, capsys, name, content, fragment):
    (bert_folder / name).write_text(content, encoding="utf-8")
    assert_user_error(["embed-text", "--text", "hello", "--model", str(bert_folder)], capsys,
                      fragment, "corrupt")


def test_embed_text_missing_model_folder(tmp_path, capsys):
    assert_user_error(["embed-text", "--text", "hi", "--model", str(tmp_path / "nope")],
                      capsys, "nope", "does not exist")


def test_embed_text_empty_data_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    assert_user_error(["embed-text", "--data", str(tmp_path / "empty.txt")], capsys,
                      "empty.txt", "empty")


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_embed_text_bad_out_is_refused_before_the_work(bert_folder, tmp_path, capsys, where,
                                                      monkeypatch):
    import lmforge.embeddings as emb

    def boom(*a, **k):
        raise AssertionError("the model ran before --out was checked")

    monkeypatch.setattr(emb, "embed_text", boom)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    (tmp_path / "dir.npy").mkdir()
    out = tmp_path / "afile" / "e.npy" if where == "under_a_file" else tmp_path / "dir.npy"
    _, line = assert_user_error(["embed-text", "--text", "hi", "--model", str(bert_folder),
                                 "--out", str(out)], capsys, str(out))
    assert ".tmp" not in line


# ----------------------------------------------------------------------------- word vectors

@pytest.mark.parametrize("verb", [["query", "--word", "Paris"],
                                  ["analogy", "Paris", "France", "Tokyo"]])
@pytest.mark.parametrize("topn", ["0", "-2"])
def test_embed_topn_below_one(vectors, capsys, verb, topn):
    assert_user_error(["embed", verb[0], str(vectors), *verb[1:], "--topn", topn], capsys,
                      "topn")


def test_embed_query_checks_every_word_before_printing(vectors, capsys):
    out, _ = assert_user_error(["embed", "query", str(vectors), "--word", "Paris", "--word",
                                "Nowhere"], capsys, "Nowhere")
    assert out == ""


@pytest.mark.parametrize("header", ["-1 2", "0 2", "100000000000 100000"])
def test_word2vec_file_with_an_impossible_header(tmp_path, capsys, header):
    p = tmp_path / "v.txt"
    p.write_text(f"{header}\nParis 1 0\n", encoding="utf-8")
    assert_user_error(["embed", "query", str(p), "--word", "Paris"], capsys, str(p))


@pytest.mark.parametrize("override,field", [
    ("word2vec.vector_size=abc", "word2vec.vector_size"),
    ("word2vec.sg=maybe", "word2vec.sg"),
    ("glove.epochs=1.5", "glove.epochs"),
])
def test_embed_train_wrong_types(tmp_path, capsys, override, field):
    assert_user_error(["embed", "train", "w2v-world", "--set", override, "--set",
                       f"run.out_dir={tmp_path / 'run'}"], capsys, field)
    assert not (tmp_path / "run").exists()


def test_embed_plot_output_in_missing_folder(vectors, tmp_path, capsys):
    out = tmp_path / "nodir" / "p.png"
    _, line = assert_user_error(["embed", "plot", str(vectors), "--word", "Paris", "--word",
                                 "France", "--out", str(out)], capsys, str(out), "nodir",
                                "does not exist")
    assert ".tmp" not in line


def test_embed_plot_output_is_a_folder(vectors, tmp_path, capsys):
    _, line = assert_user_error(["embed", "plot", str(vectors), "--word", "Paris", "--word",
                                 "France", "--out", str(tmp_path)], capsys, str(tmp_path),
                                "folder")
    assert ".tmp" not in line


# ----------------------------------------------------------------------------- output folders

def test_output_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello world\n", encoding="utf-8")
    _, line = assert_user_error(["tokenizer", "train", str(tmp_path / "a.txt"), "--out",
                                 str(tmp_path / "a.txt")], capsys, "a.txt", "is a file")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "hello world\n"


def test_generate_default_length_fits_the_context_and_explicit_overflow_prints_nothing(
        gpt_folder, capsys):
    """The tiny model's context is 32: the default (64 new tokens) shrinks to fit the
    prompt; an explicit --max-new-tokens that does not fit is an error that says what
    fits, before anything (not even the streamed prompt) is printed."""
    code, out, err = run_cli(["generate", str(gpt_folder), "--prompt", "hello",
                              "--seed", "0"], capsys)
    assert code == 0, err
    assert out.startswith("hello") and len(out.strip()) > len("hello")
    out, line = assert_user_error(["generate", str(gpt_folder), "--prompt", "hello",
                                   "--max-new-tokens", "40", "--stream"], capsys,
                                  "with max_new_tokens=40", "Lower max_new_tokens to")
    assert out == ""


def test_block_size_longer_than_the_context_fails_before_any_data_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert_user_error(["pretrain", "quickstart", "--no-progress", "--set",
                       "train.block_size=512", "--set", f"run.out_dir={out}"], capsys,
                      "train.block_size=512", "model.max_seq_len=64")
    assert not out.exists()  # the corpus was not built, the tokenizer not trained


def test_embed_text_takes_a_run_folder_like_the_other_verbs(bert_folder, tmp_path, capsys):
    """``--model RUN`` means the run's checkpoint, as for generate/evaluate/convert; the
    vectors equal those from the checkpoint folder itself."""
    run = tmp_path / "run"
    shutil.copytree(bert_folder, run / "checkpoints" / "step_0000002")
    rows = []
    for model in (run, run / "checkpoints" / "step_0000002"):
        out = tmp_path / f"e{len(rows)}.jsonl"
        code, _, err = run_cli(["embed-text", "--text", "你好 hello", "--model", str(model),
                                "--out", str(out)], capsys)
        assert code == 0, err
        rows.append(json.loads(out.read_text(encoding="utf-8").splitlines()[0])["embedding"])
    assert rows[0] == rows[1] and len(rows[0]) == 16
