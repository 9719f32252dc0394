"""The security audit of issue 18 §5 (docs/security.md): one test per finding that was
fixed, and static checks that keep the fixes in place.

- nothing unpickles with the full pickle (an AST scan of the package), and the one
  third-party loader that did, ``torch.distributed.checkpoint``, runs through
  :mod:`lmforge.train.dcp_safe`;
- names read from files and requests stay inside their folder (a Hugging Face index's
  shard names, a checkpoint's checksum table, registry names in admin requests,
  ``run.name``);
- JSON nested too deeply is a one-line error (model-folder JSON, ``data redact``) or a
  4xx (request bodies), never a ``RecursionError``;
- secrets stay out of reprs, messages and logs.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import pickle
import time
import warnings
from pathlib import Path

import pytest
import torch
from fakes import assert_user_error
from serve_fixtures import make_model_folder

import lmforge
from lmforge.errors import CheckpointError, ConfigError, DataError

PACKAGE = Path(lmforge.__file__).parent
RAN: list[str] = []  # what a hostile pickle managed to run


def _record(what: str) -> str:
    """The global a hostile pickle names: it runs only if the unpickler lets it."""
    RAN.append(what)
    return what


class Hostile:
    """Pickles to a call of :func:`_record`, the way ``os.system`` would be called."""

    def __init__(self, what: str):
        self.what = what

    def __reduce__(self):
        return (_record, (self.what,))


# ------------------------------------------------------------------ static checks

def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_loader_in_the_package_runs_code_from_a_file():
    """Every ``torch.load`` passes ``weights_only=True``; no pickle/marshal/shelve/dill/
    joblib load, ``allow_pickle=True``, ``yaml.load``/``unsafe_load``, ``eval``/``exec``;
    ``torch.distributed.checkpoint.load`` only in :mod:`lmforge.train.dcp_safe`, with its
    safe reader and planner."""
    banned = {"pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.load",
              "marshal.loads", "shelve.open", "dill.load", "dill.loads", "joblib.load",
              "yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec",
              "torch.distributed.checkpoint.load"}
    problems, torch_loads = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        if "allow_pickle=True" in source:
            problems.append(f"{rel}: allow_pickle=True")
        for call, name in _calls(ast.parse(source)):
            where = f"{rel}:{call.lineno} {name}"
            if name == "torch.load":
                torch_loads += 1
                flag = _kw(call, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where} without weights_only=True")
            elif name in banned:
                problems.append(where)
            elif name == "dcp.load" and not (
                    rel == "train/dcp_safe.py" and _kw(call, "storage_reader") is not None
                    and _kw(call, "planner") is not None):
                problems.append(f"{where} (use lmforge.train.dcp_safe.safe_load)")
    assert torch_loads >= 2  # the scan sees the package's torch.load calls
    assert problems == []


def test_the_static_check_catches_what_it_looks_for():
    code = ("import torch, pickle, yaml\ntorch.load(f)\ntorch.load(f, weights_only=False)\n"
            "pickle.loads(b)\nyaml.load(s)\nyaml.safe_load(s)\n")
    found = [name for _, name in _calls(ast.parse(code))]
    assert found.count("torch.load") == 2 and "pickle.loads" in found
    assert "yaml.load" in found and "yaml.safe_load" in found


# ------------------------------------------------------------------ DCP unpickling

def _dcp_folder(tmp_path: Path, extra: object = 1.0) -> tuple[Path, dict]:
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(0)
    state = {"model": torch.nn.Linear(3, 4).state_dict(), "extra": extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=tmp_path / "dcp")
    return tmp_path / "dcp", state


def _empty_state() -> dict:
    return {"model": {k: torch.zeros_like(v) for k, v in
                      torch.nn.Linear(3, 4).state_dict().items()}, "extra": 0.0}


def _quiet_load(load, state, folder):
    logging.getLogger("torch.distributed.checkpoint").disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(state, folder)
    finally:
        logging.getLogger("torch.distributed.checkpoint").disabled = False


def test_safe_dcp_load_restores_a_checkpoint(tmp_path):
    from lmforge.train.dcp_safe import safe_load

    folder, saved = _dcp_folder(tmp_path, extra=0.125)
    state = _empty_state()
    _quiet_load(safe_load, state, folder)
    assert all(torch.equal(state["model"][k], v) for k, v in saved["model"].items())
    assert state["extra"] == 0.125


def _plain_dcp_load(state, folder):
    import torch.distributed.checkpoint as dcp

    dcp.load(state, checkpoint_id=folder)


@pytest.mark.parametrize("where", ["metadata", "value"])
def test_safe_dcp_load_runs_no_code_from_the_folder(tmp_path, where):
    """Finding 1: DCP's reader unpickles ``.metadata`` with ``pickle.load`` and non-tensor
    values with ``torch.load(weights_only=False)``; torch's own loader runs the hostile
    pickle, lmforge's refuses it."""
    from lmforge.train.dcp_safe import safe_load

    folder, _ = _dcp_folder(tmp_path, extra=Hostile(where) if where == "value" else 1.0)
    if where == "metadata":
        (folder / ".metadata").write_bytes(pickle.dumps(Hostile(where)))
    RAN.clear()
    with pytest.raises(CheckpointError, match="not allowed|not a plain tensor file"):
        _quiet_load(safe_load, _empty_state(), folder)
    assert RAN == []
    with contextlib.suppress(BaseException):  # DCP's CheckpointException is one
        _quiet_load(_plain_dcp_load, _empty_state(), folder)
    assert RAN == [where]  # the reference: torch's loader did run it


# ------------------------------------------------------------------ paths

@pytest.mark.parametrize("name", ["../outside.safetensors", "/tmp/outside.safetensors",
                                  "sub/../../outside.safetensors", "..\\outside.safetensors"])
def test_hf_index_shards_stay_in_the_folder(tmp_path, name):
    """Finding 2: a shard name in ``model.safetensors.index.json`` reached any file."""
    from lmforge.hf.io import SAFETENSORS_INDEX, hf_weight_files

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    (folder / SAFETENSORS_INDEX).write_text(json.dumps({"weight_map": {"w": name}}))
    with pytest.raises(CheckpointError, match="outside"):
        hf_weight_files(folder)


def test_hf_index_shards_in_subfolders_and_cache_links_still_load(tmp_path):
    from lmforge.hf.io import SAFETENSORS_INDEX, hf_weight_files

    folder, blobs = tmp_path / "snapshot", tmp_path / "blobs"
    (folder / "sub").mkdir(parents=True)
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"x")
    (folder / "a.safetensors").symlink_to(blobs / "abc")  # the Hugging Face cache's layout
    (folder / "sub" / "b.safetensors").write_bytes(b"x")
    (folder / SAFETENSORS_INDEX).write_text(json.dumps(
        {"weight_map": {"w": "a.safetensors", "v": "sub/b.safetensors"}}))
    assert hf_weight_files(folder) == [folder / "a.safetensors", folder / "sub/b.safetensors"]


def test_checkpoint_checksum_names_stay_in_the_checkpoint(tmp_path):
    """Finding 3: a name in ``trainer_state.json``'s ``sha256`` table made the checker
    read (and hash) any file on the machine."""
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.train.checkpoint import (
        STATE,
        checkpoint_path,
        save_checkpoint,
        verify_checkpoint,
    )

    model = GPT(GPTConfig(vocab_size=32, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    path = save_checkpoint(checkpoint_path(tmp_path / "run", 1), model, optimizer_payload={},
                           trainer_state={"step": 1, "seed": 0, "config": {}})
    assert verify_checkpoint(path)["step"] == 1
    (tmp_path / "secret.txt").write_text("not a checkpoint file")
    state = json.loads((path / STATE).read_text())
    state["sha256"]["../../../secret.txt"] = "0" * 64
    (path / STATE).write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="outside"):
        verify_checkpoint(path)


def test_run_name_is_a_folder_name_not_a_path():
    """Finding 4: ``run.name: ../../x`` put ``runs/<name>`` anywhere; ``out_dir`` is the
    field that chooses any folder."""
    from lmforge.config import build_recipe

    for name in ("../x", "a/b", "..", "/abs", "a\\b"):
        with pytest.raises(ConfigError, match="run.name"):
            build_recipe({"run": {"name": name}})
    assert build_recipe({"run": {"name": "sent-v2.1"}}).run.path == Path("runs/sent-v2.1")
    assert build_recipe({"run": {"out_dir": "/tmp/any"}}).run.path == Path("/tmp/any")


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory):
    """A keyed server over a registry, started in-process, with a valid model folder
    beside the registry (what an escaping name would reach)."""
    from fastapi.testclient import TestClient

    from lmforge.serve.app import ServerOptions, build_app
    from lmforge.serve.keys import KeyStore
    from lmforge.serve.registry import registry_specs

    root = tmp_path_factory.mktemp("audit")
    make_model_folder(root / "registry" / "tiny" / "1", max_seq_len=32)
    make_model_folder(root / "outside" / "1", max_seq_len=32)
    secret = KeyStore(root / "serve.db").create("admin", "root")[1]
    app = build_app(registry_specs(root / "registry"),
                    ServerOptions(db=root / "serve.db", registry=root / "registry"))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client, root, secret


def test_admin_model_names_stay_in_the_registry(admin_app):
    """Finding 5: ``POST /admin/models {"name": "../outside"}`` loaded a folder outside the
    registry (the response was 200 and the model served)."""
    from lmforge.serve.registry import versions

    client, root, _ = admin_app
    for name in ("../outside", str(root / "outside"), "tiny/../../outside"):
        r = client.post("/admin/models", json={"name": name})
        assert r.status_code == 404, r.text
        assert "plain name" in r.json()["error"]["message"]
    served = [m["name"] for m in client.get("/admin/models").json()["data"]]
    assert served == ["tiny"]
    with pytest.raises(DataError, match="plain name"):
        versions(root / "registry", "..")
    assert client.post("/admin/models", json={"name": "tiny", "version": "1"}).status_code \
        == 200


# ------------------------------------------------------------------ sizes and depth

def test_deeply_nested_request_bodies_are_4xx_on_every_route(admin_app):
    client, _, _ = admin_app
    posts = [path for path, ops in client.get("/openapi.json").json()["paths"].items()
             if "post" in ops]
    assert {"/v1/completions", "/v1/chat/completions", "/admin/models"} <= set(posts)
    for depth in (200, 5000, 200_000):
        nested = "[" * depth + "]" * depth
        body = '{"model": "tiny", "prompt": ' + nested + ', "messages": ' + nested + "}"
        for path in posts:
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, depth, r.status_code, r.text[:200])


def test_deeply_nested_model_folder_json_is_a_one_line_error(tmp_path):
    """Finding 6: a ``config.json`` nested too deeply raised ``RecursionError``."""
    from lmforge.hf.io import SAFETENSORS_INDEX, hf_weight_files, is_hf_folder
    from lmforge.hub import load_pretrained
    from lmforge.io import read_json

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "config.json").write_text(deep)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_json(tmp_path / "config.json")
    assert not is_hf_folder(tmp_path)
    with pytest.raises(CheckpointError):
        load_pretrained(tmp_path)
    (tmp_path / SAFETENSORS_INDEX).write_text('{"weight_map": ' + deep + "}")
    with pytest.raises(CheckpointError, match="corrupt"):
        hf_weight_files(tmp_path)


def test_redacting_a_deeply_nested_record_is_a_one_line_error(tmp_path, capsys):
    """Finding 7: a JSONL record that parses but is nested a few hundred levels deep
    crashed ``lmforge data redact`` with a RecursionError traceback."""
    src = tmp_path / "deep.jsonl"
    src.write_text('{"a": ' + "[" * 600 + '"x@example.com"' + "]" * 600 + "}\n")
    assert_user_error(["data", "redact", str(src), "--out", str(tmp_path / "out.jsonl")],
                      capsys, "line 1", "nested too deeply")
    assert not (tmp_path / "out.jsonl").exists()


def test_headers_are_bounded(tmp_path):
    """safetensors refuses a header over 100 MB before reading it; lmforge's encrypted
    header is 52 fixed bytes and its chunk size is authenticated by the key check."""
    import struct

    from safetensors import SafetensorError

    from lmforge.privacy.crypto import HEADER, encrypt_file, read_decrypted
    from lmforge.privacy.encrypted_io import load_safetensors
    from lmforge.privacy.keys import KeySource

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(SafetensorError, match="header too large"):
        load_safetensors(bad)
    plain, sealed = tmp_path / "p.bin", tmp_path / "s.bin"
    plain.write_bytes(b"weights" * 100)
    key = KeySource(key=bytes(range(32)))
    encrypt_file(plain, sealed, key, chunk_size=64)
    raw = bytearray(sealed.read_bytes())
    raw[HEADER.size - 20:HEADER.size - 16] = struct.pack(">I", 0xFFFFFFFF)  # chunk size
    sealed.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="wrong key or passphrase"):
        read_decrypted(sealed, key)


# ------------------------------------------------------------------ secrets

def test_secrets_stay_out_of_reprs_and_messages(tmp_path, monkeypatch):
    """Finding 8: ``repr(Redactor)`` showed the HMAC salt."""
    from lmforge.privacy.keys import KeySource, resolve_key
    from lmforge.privacy.pii.redact_files import make_redactor
    from lmforge.serve.app import ServerOptions, config_json
    from lmforge.serve.models import ModelSpec

    salt = b"pepper-0123456789abcdef"
    assert "pepper" not in repr(make_redactor(operator="hash", salt=salt))
    key = bytes.fromhex("ab" * 32)
    assert "ab" * 8 not in repr(KeySource(key=key)) + str(KeySource(key=key))
    assert "hunter2" not in repr(KeySource(passphrase=b"hunter2"))
    monkeypatch.setenv("AUDIT_KEY", "cd" * 31 + "zz")  # malformed: the message must not echo it
    with pytest.raises(ConfigError) as e:
        resolve_key(key_env="AUDIT_KEY")
    assert "cdcd" not in str(e.value) and "AUDIT_KEY" in str(e.value)
    monkeypatch.setenv("AUDIT_KEY", "ab" * 32)
    assert resolve_key(key_env="AUDIT_KEY").key == key
    worker_config = config_json([ModelSpec("m", "runs/m")],
                                ServerOptions(key={"key_file": None, "key_env": "AUDIT_KEY",
                                                   "passphrase_env": None}))
    assert "AUDIT_KEY" in worker_config and "abab" not in worker_config


def test_api_keys_stay_out_of_the_request_log_and_audit(admin_app, caplog):
    from lmforge.serve.audit import AuditLog

    client, root, secret = admin_app
    wrong = "lmf-" + "x" * 43
    with caplog.at_level(logging.INFO, logger="lmforge.serve.access"):
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {wrong}"}
                          ).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "lmforge.serve.access"]
    assert len(lines) == 2 and all(secret not in m and wrong not in m for m in lines)
    rows = json.dumps(AuditLog(root / "serve.db").tail(1000))
    assert "/v1/models" in rows and secret not in rows and secret[4:20] not in rows


def test_a_sentence_transformers_module_path_cannot_leave_the_folder(tmp_path):
    """modules.json names the pooling folder; ``../x`` must not be followed."""
    import json
    import shutil

    from lmforge.embeddings.contextual import SentenceEncoder, default_model_path
    from lmforge.errors import CheckpointError

    enc = tmp_path / "enc"
    shutil.copytree(default_model_path(), enc)
    modules = json.loads((enc / "modules.json").read_text())
    for m in modules:
        if m["type"].endswith("Pooling"):
            m["path"] = "../elsewhere"
    (enc / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match="outside"):
        SentenceEncoder.load(enc)
