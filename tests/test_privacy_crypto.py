"""Encryption at rest (lmforge.privacy.crypto): AES-256-GCM in the STREAM construction.

Round trips against the `cryptography` primitives; every tamper case (a flipped bit in the
header or a chunk, truncation at and inside a chunk, swapped chunks, an extension, a chunk
from another file, a wrong key or passphrase) is a one-line error that leaves nothing
behind; folders are verified before any file changes; key rotation; the commands."""

from __future__ import annotations

import os
import stat

import pytest
from fakes import assert_user_error, run_cli

pytest.importorskip("cryptography")

from lmforge.errors import CheckpointError  # noqa: E402
from lmforge.privacy.crypto import (  # noqa: E402
    HEADER,
    TAG,
    decrypt_file,
    decrypt_tree,
    encrypt_file,
    encrypt_tree,
    is_encrypted,
    read_decrypted,
    rotate_tree,
)
from lmforge.privacy.keys import KeySource, write_new_key  # noqa: E402

KEY = KeySource(key=bytes(range(32)))
OTHER = KeySource(key=bytes(32))
CHUNK = 64


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7])
def test_round_trip_and_layout(tmp_path, size):
    plain = os.urandom(size)
    src, enc = tmp_path / "a.bin", tmp_path / "a.enc"
    src.write_bytes(plain)
    encrypt_file(src, enc, KEY, chunk_size=CHUNK)
    n_chunks = max(1, -(-size // CHUNK))
    assert enc.stat().st_size == HEADER.size + size + n_chunks * TAG
    assert is_encrypted(enc) and not is_encrypted(src)
    assert read_decrypted(enc, KEY) == plain
    decrypt_file(enc, tmp_path / "b.bin", KEY)
    assert (tmp_path / "b.bin").read_bytes() == plain


def test_chunks_are_plain_aes_gcm(tmp_path):
    """The format decodes with the primitive alone: nonce = prefix ‖ index ‖ last,
    aad = header."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain = os.urandom(2 * CHUNK + 5)
    (tmp_path / "a").write_bytes(plain)
    encrypt_file(tmp_path / "a", tmp_path / "e", KEY, chunk_size=CHUNK)
    data = (tmp_path / "e").read_bytes()
    header, body = data[:HEADER.size], data[HEADER.size:]
    prefix = HEADER.unpack(header)[3]
    out, step = b"", CHUNK + TAG
    for i in range(3):
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if i == 2 else b"\x00")
        out += AESGCM(KEY.key).decrypt(nonce, body[i * step:(i + 1) * step], header)
    assert out == plain


def _sealed(tmp_path, n_chunks=4):
    (tmp_path / "p").write_bytes(os.urandom(n_chunks * CHUNK))
    encrypt_file(tmp_path / "p", tmp_path / "e", KEY, chunk_size=CHUNK)
    return (tmp_path / "e").read_bytes()


def _swap(data):
    h, s = HEADER.size, CHUNK + TAG
    return data[:h] + data[h + s:h + 2 * s] + data[h:h + s] + data[h + 2 * s:]


@pytest.mark.parametrize("tamper, fragment", [
    (lambda d: d[:HEADER.size + 10] + bytes([d[HEADER.size + 10] ^ 1]) + d[HEADER.size + 11:],
     "chunk 0 failed authentication"),
    (lambda d: d[:9] + bytes([d[9] ^ 1]) + d[10:], "wrong key or passphrase"),
    (lambda d: d[:-(CHUNK + TAG)], "chunk 2 failed authentication"),       # cut at a boundary
    (lambda d: d[:-5], "chunk 3 failed authentication"),                   # cut inside
    (_swap, "chunk 0 failed authentication"),
    (lambda d: d + d[-(CHUNK + TAG):], "chunk 3 failed authentication"),   # extended
    (lambda d: d[:20], "not an lmforge-encrypted file"),
])
def test_tampering_is_detected_and_leaves_nothing(tmp_path, tamper, fragment):
    data = _sealed(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(tamper(data))
    with pytest.raises(CheckpointError, match=fragment):
        read_decrypted(bad, KEY)
    with pytest.raises(CheckpointError, match=fragment):
        decrypt_file(bad, tmp_path / "out", KEY)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_chunk_from_another_file_and_wrong_keys(tmp_path):
    a = _sealed(tmp_path)
    (tmp_path / "p").write_bytes(os.urandom(4 * CHUNK))
    encrypt_file(tmp_path / "p", tmp_path / "e2", KEY, chunk_size=CHUNK)
    b = (tmp_path / "e2").read_bytes()
    h, s = HEADER.size, CHUNK + TAG
    (tmp_path / "mix").write_bytes(a[:h + s] + b[h + s:h + 2 * s] + a[h + 2 * s:])
    with pytest.raises(CheckpointError, match="chunk 1 failed"):
        read_decrypted(tmp_path / "mix", KEY)
    with pytest.raises(CheckpointError, match="wrong key"):
        read_decrypted(tmp_path / "e", OTHER)
    with pytest.raises(CheckpointError, match="encrypted with a key"):
        read_decrypted(tmp_path / "e", KeySource(passphrase=b"x"))


def test_passphrase_salts_differ_per_file(tmp_path):
    pw = KeySource(passphrase="correct horse 电池".encode())
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"same text")
        encrypt_file(tmp_path / name, tmp_path / name, pw)
    a, b = (tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()
    assert HEADER.unpack(a[:HEADER.size])[2] != HEADER.unpack(b[:HEADER.size])[2]
    assert read_decrypted(tmp_path / "a", pw) == b"same text"
    with pytest.raises(CheckpointError, match="wrong key or passphrase"):
        read_decrypted(tmp_path / "a", KeySource(passphrase=b"wrong"))
    with pytest.raises(CheckpointError, match="encrypted with a passphrase"):
        read_decrypted(tmp_path / "a", KEY)


def _tree(root):
    (root / "sub").mkdir(parents=True)
    files = {"config.json": b'{"a": 1}', "model.safetensors": os.urandom(3000),
             "sub/tokenizer.json": "{\"词\": 2}".encode()}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def test_folders_encrypt_decrypt_and_rotate(tmp_path):
    files = _tree(tmp_path / "run")
    assert encrypt_tree(tmp_path / "run", KEY, chunk_size=CHUNK) == 3
    assert encrypt_tree(tmp_path / "run", KEY) == 0  # already encrypted: skipped
    assert all(is_encrypted(tmp_path / "run" / n) for n in files)
    (tmp_path / "run" / "extra.txt").write_bytes(b"plain")
    with pytest.raises(CheckpointError, match="wrong key"):
        decrypt_tree(tmp_path / "run", OTHER)
    assert all(is_encrypted(tmp_path / "run" / n) for n in files)  # nothing changed
    assert rotate_tree(tmp_path / "run", KEY, OTHER) == 3
    with pytest.raises(CheckpointError, match="wrong key"):
        read_decrypted(tmp_path / "run" / "config.json", KEY)
    assert decrypt_tree(tmp_path / "run", OTHER) == 3
    for name, data in files.items():
        assert (tmp_path / "run" / name).read_bytes() == data


def test_keygen_and_commands(tmp_path, capsys, monkeypatch):
    files = _tree(tmp_path / "run")
    code, out, err = run_cli(["keygen", "--out", str(tmp_path / "k")], capsys)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    key_hex = (tmp_path / "k").read_text().strip()
    assert len(key_hex) == 64 and key_hex not in out
    assert_user_error(["keygen", "--out", str(tmp_path / "k")], capsys, "never overwrites")
    code, out, err = run_cli(["encrypt", str(tmp_path / "run"), "--key-file",
                              str(tmp_path / "k")], capsys)
    assert code == 0 and "encrypted 3 file(s)" in out, err
    monkeypatch.setenv("LMF_KEY", key_hex)
    monkeypatch.setenv("LMF_PW", "a new passphrase")
    code, out, err = run_cli(["rekey", str(tmp_path / "run"), "--key-env", "LMF_KEY",
                              "--new-passphrase-env", "LMF_PW"], capsys)
    assert code == 0 and "re-encrypted 3 file(s)" in out, err
    assert_user_error(["decrypt", str(tmp_path / "run"), "--key-env", "LMF_KEY"], capsys,
                      "encrypted with a passphrase")
    code, out, err = run_cli(["decrypt", str(tmp_path / "run"), "--passphrase-env", "LMF_PW"],
                             capsys)
    assert code == 0, err
    for name, data in files.items():
        assert (tmp_path / "run" / name).read_bytes() == data
    assert key_hex not in out + err


@pytest.mark.parametrize("args, fragment", [
    (["encrypt", "{run}", "--key-file", "{tmp}/missing.key"], "key file"),
    (["encrypt", "{run}"], "exactly one of"),
    (["encrypt", "{run}", "--key-env", "LMF_UNSET_VAR"], "LMF_UNSET_VAR is not set"),
    (["encrypt", "{tmp}/nowhere", "--key-file", "{tmp}/k"], "not found"),
    (["encrypt", "{run}", "--key-file", "{tmp}/short"], "is not a key"),
])
def test_bad_key_input_is_one_line(tmp_path, capsys, args, fragment):
    _tree(tmp_path / "run")
    write_new_key(tmp_path / "k")
    (tmp_path / "short").write_text("abcd")
    fill = {"run": str(tmp_path / "run"), "tmp": str(tmp_path)}
    assert_user_error([a.format(**fill) for a in args], capsys, fragment)
