"""``lmforge compress`` end to end at a tiny size: every method writes a folder that
``load_pretrained``, ``generate``, ``evaluate`` and ``predict`` use unchanged, with the
method, its parameters and the parent's checksum in ``lmforge.json`` and a report of
size and quality; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from compress_fixtures import tiny_classifier_run
from fakes import assert_user_error, run_cli

from lmforge.hub import load_pretrained
from lmforge.models.base import sha256_file


@pytest.fixture(scope="module")
def lm_run(tiny_lm_run):
    return tiny_lm_run


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory):
    return tiny_classifier_run(tmp_path_factory.mktemp("clf") / "run")


def _compress(capsys, run, out, *args):
    code, stdout, err = run_cli(["compress", str(run), "--out", str(out), "--no-progress",
                                 *args], capsys)
    assert code == 0, err
    meta = json.loads((out / "lmforge.json").read_text())
    report = json.loads((out / "report.json").read_text())
    return meta, report, stdout


def _parent_sha(run):
    from lmforge.hub import resolve_model_dir

    return sha256_file(resolve_model_dir(run) / "model.safetensors")


LM_METHODS = [
    ("prune", ["--sparsity", "0.5", "--steps", "4"]),
    ("prune", ["--sparsity", "0.6", "--schedule", "gradual", "--scope", "global",
               "--steps", "6"]),
    ("prune-structured", ["--heads", "0.25", "--ffn", "0.3", "--steps", "4",
                          "--score-batches", "2"]),
    ("distill", ["--steps", "4"]),
    ("int8", []),
    ("int8-dynamic", []),
    ("int4", ["--group-size", "32", "--embeddings", "int8", "--sensitivity"]),
    ("lowrank", ["--energy", "0.8", "--steps", "4"]),
]


@pytest.mark.parametrize("method,args", LM_METHODS, ids=[f"{m}-{i}" for i, (m, _a)
                                                          in enumerate(LM_METHODS)])
def test_language_model_methods_write_loadable_folders(lm_run, tmp_path, capsys, method,
                                                      args):
    out = tmp_path / "out"
    meta, report, stdout = _compress(capsys, lm_run, out, "--method", method, *args)
    assert meta["compression"]["method"] == method
    assert meta["compression"]["parent_sha256"] == _parent_sha(lm_run)
    assert "recipe" in meta
    model, tok = load_pretrained(out, require_tokenizer=True)
    assert report["compressed"]["bytes"] == (out / "model.safetensors").stat().st_size
    q = report["compressed"]["quality"]
    assert q["true_bits"] == report["parent"]["quality"]["true_bits"]
    assert q["bits_per_sentence"] >= q["true_bits"]  # Gibbs: no model beats the truth
    if method == "prune":
        sparsity = report["sparsity"]["overall"]
        want = float(args[1])
        assert sparsity == pytest.approx(want, abs=1e-3)
        zeros = sum(int((m.weight == 0).sum()) for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and n.startswith("blocks."))
        total = sum(m.weight.numel() for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and n.startswith("blocks."))
        assert zeros / total == pytest.approx(want, abs=1e-3)
        assert report["sparse_bytes"]["bitmask"] < report["dense_bytes"]
    if method == "prune-structured":
        assert model.config.n_head == 3 and report["compressed"]["parameters"] < \
            report["parent"]["parameters"]
    if method == "distill":
        assert model.config.n_layer == 1 and model.config.d_model == 32
    if method in ("int8", "int8-dynamic", "int4"):  # saved quantised: loading re-uses it
        kinds = {m["kind"] for m in meta["modules"].values()}
        assert kinds == ({"int4", "int8-embedding"} if method == "int4" else {"int8"})
        assert report["compressed"]["parameters"] == report["parent"]["parameters"]
        bits = (q["bits_per_sentence"], report["parent"]["quality"]["bits_per_sentence"])
        assert bits[0] == pytest.approx(bits[1], rel=0.03)
    if method == "int4":
        assert report["parent"]["bytes"] / report["compressed"]["bytes"] >= 5
        rows = report["sensitivity"]["layers"]
        assert len(rows) == 9 and rows[0]["delta"] >= rows[-1]["delta"]
    if method == "lowrank":
        assert {m["kind"] for m in meta["modules"].values()} == {"lowrank"}
        assert report["compressed"]["parameters"] < report["parent"]["parameters"]
    code, text, err = run_cli(["generate", str(out), "--prompt", "Alice", "--max-new-tokens",
                               "5", "--temperature", "0"], capsys)
    assert code == 0 and text.strip(), err


def test_classifier_structured_pruning_and_predict(clf_run, tmp_path, capsys):
    out = tmp_path / "pruned"
    meta, report, _ = _compress(capsys, clf_run, out, "--method", "prune-structured",
                                "--heads", "0.5", "--ffn", "0.5", "--steps", "4",
                                "--score-batches", "2")
    assert report["structure"]["n_head"] == [4, 2]
    assert set(report["compressed"]["quality"]) >= {"accuracy", "f1_macro", "ceiling"}
    code, text, err = run_cli(["predict", str(out), "--text", "The soup was great."],
                              capsys)
    assert code == 0, err
    assert json.loads(text.splitlines()[0])["label"] in ("positive", "negative", "neutral")


def test_resume_continues_an_interrupted_finetuning(lm_run, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--method", "prune-structured", "--heads", "0.25", "--ffn", "0.25",
            "--score-batches", "2"]
    _compress(capsys, lm_run, tmp_path / "whole", *base, "--steps", "6")
    (out / "finetune").mkdir(parents=True)
    # An interrupted run: the same command, stopped after its first checkpoint.
    from lmforge.compression.command import CompressOptions, compress

    opts = CompressOptions(method="prune-structured", heads=0.25, ffn=0.25, score_batches=2,
                           steps=6)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(3, lambda: compress(lm_run, opts, out, show_progress=False,
                                             log=lambda _m: None))
    assert_user_error(["compress", str(lm_run), "--out", str(out), *base, "--steps", "6"],
                      capsys, "--resume")
    _compress(capsys, lm_run, out, *base, "--steps", "6", "--resume")
    a = load_pretrained(tmp_path / "whole")[0].state_dict()
    b = load_pretrained(out)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _interrupt_after(steps: int, fn):
    """Run ``fn`` with the trainer raising KeyboardInterrupt after ``steps`` steps (their
    checkpoint written)."""
    from lmforge.train import trainer as trainer_module

    real = trainer_module.Trainer.save_checkpoint

    def save_then_stop(self, step, *args, **kwargs):
        path = real(self, step, *args, **kwargs)
        if step >= steps:
            raise KeyboardInterrupt
        return path

    trainer_module.Trainer.save_checkpoint = save_then_stop
    try:
        return fn()
    finally:
        trainer_module.Trainer.save_checkpoint = real


def test_bad_input_is_one_line_and_exit_2(lm_run, clf_run, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "zip"], capsys,
                      "--method must be one of")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "prune",
                       "--sparsity", "1.0"], capsys, "sparsity must be in [0, 1)")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "prune",
                       "--sparsity", "-0.1"], capsys, "sparsity must be in [0, 1)")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "distill",
                       "--student", str(clf_run)], capsys, "vocab")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "distill",
                       "--student", "bilstm"], capsys, "--student bilstm")
    assert_user_error(["compress", str(tmp_path / "nope"), "--out", out, "--method",
                       "int8"], capsys, "does not exist")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "int4",
                       "--group-size", "128"], capsys, "64", "group")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "lowrank",
                       "--rank", "65"], capsys, "rank 65", "64")
    assert_user_error(["compress", str(lm_run), "--out", out, "--method", "lowrank",
                       "--ranks", "qkv"], capsys, "PATTERN=RANK")
    # options that need no model fail before the parent is loaded and scored (minutes on
    # a large model): here the parent does not even exist
    nope = str(tmp_path / "nope")
    for method, flags, message in [
            ("prune", ["--sparsity", "1.5"], "--sparsity must be in [0, 1)"),
            ("prune", ["--schedule", "slow"], "--schedule must be oneshot or gradual"),
            ("prune-structured", ["--heads", "1"], "--heads must be in [0, 1)"),
            ("int4", ["--group-size", "48"], "group_size must be one of"),
            ("int4", ["--embeddings", "int4"], "--embeddings must be fp32 or int8"),
            ("lowrank", ["--rank", "4", "--energy", "0.5"], "give one of --rank"),
            ("lowrank", ["--energy", "1.5"], "--energy must be in (0, 1]"),
            ("distill", ["--alpha", "2"], "alpha must be in [0, 1]")]:
        assert_user_error(["compress", nope, "--out", out, "--method", method, *flags],
                          capsys, message)


@pytest.fixture(scope="module")
def served_folders(lm_run, tmp_path_factory):
    """An int4 folder (swapped modules) and a structurally pruned one (a new config)."""
    from lmforge.compression.command import CompressOptions, compress

    root = tmp_path_factory.mktemp("served")
    folders = {"q4": root / "q4", "pruned": root / "pruned"}
    quiet = {"show_progress": False, "log": lambda _m: None}
    compress(lm_run, CompressOptions(method="int4", group_size=32), folders["q4"], **quiet)
    compress(lm_run, CompressOptions(method="prune-structured", heads=0.5, ffn=0.5, steps=2,
                                     score_batches=1), folders["pruned"], **quiet)
    return folders


def test_compressed_folders_serve_unchanged(served_folders):
    """Behind the OpenAI-compatible server they answer exactly what lmforge's own
    generation gives. (No capsys here: uvicorn's log handlers must not bind to a captured
    stream that closes when the test ends.)"""
    import openai
    from serve_fixtures import running

    from lmforge.generate import generate
    from lmforge.serve.app import ServerOptions, build_app
    from lmforge.serve.models import ModelSpec

    app = build_app([ModelSpec(n, str(p)) for n, p in served_folders.items()],
                    ServerOptions(engine={"max_running": 2}))
    with running(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        for name, folder in served_folders.items():
            model, tok = load_pretrained(folder, require_tokenizer=True)
            want = generate(model, tok, "Alice lives in", max_new_tokens=8, temperature=0)
            r = client.completions.create(model=name, prompt="Alice lives in", max_tokens=8,
                                          temperature=0)
            assert r.choices[0].text == want


def test_compressed_folders_evaluate(served_folders, tmp_path, capsys):
    data = tmp_path / "held_out.txt"
    data.write_text("Alice lives in Paris.\nBob works in Lima.\n", encoding="utf-8")
    for folder in served_folders.values():
        code, text, err = run_cli(["evaluate", str(folder), "--data", str(data)], capsys)
        assert code == 0 and "perplexity" in text, err


def test_ner_tagger_compresses_and_predicts(tmp_path, capsys):
    """A CRF tagger: int8 keeps its entity F1 on the test split (within 0.05), structured
    pruning keeps the CRF, and ``predict`` reads both folders; a CRF tagger cannot be
    distilled (one line)."""
    from compress_fixtures import tiny_ner_run

    from lmforge.tasks import load_task_model

    run = tiny_ner_run(tmp_path / "ner")
    texts = ["Anna lives in Paris .", "Bob works for Acme in Lima ."]
    for method, args in (("int8", []), ("prune-structured", ["--heads", "0.5", "--ffn",
                                                             "0.5", "--steps", "2",
                                                             "--score-batches", "1"])):
        out = tmp_path / method
        _, report, _ = _compress(capsys, run, out, "--method", method, *args)
        assert "entity_f1" in report["compressed"]["quality"]
        got = load_task_model(out).predict(texts)
        assert [len(p["tags"]) for p in got] == [5, 7]
        if method == "int8":
            f1 = [report[k]["quality"]["entity_f1"] for k in ("parent", "compressed")]
            assert f1[1] == pytest.approx(f1[0], abs=0.05)
    assert_user_error(["compress", str(run), "--out", str(tmp_path / "d"), "--method",
                       "distill"], capsys, "CRF tagger cannot be distilled")
