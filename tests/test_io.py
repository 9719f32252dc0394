"""Atomic writes: a failed write leaves the old file and no temp file behind."""

from __future__ import annotations

import stat

import pytest

from lmforge.io import atomic_dir, atomic_open, atomic_write_bytes, atomic_write_text


def test_atomic_open_streams_and_replaces(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with atomic_open(path) as f:
        for i in range(3):
            f.write(bytes([i]) * 4)
        assert path.read_bytes() == b"old"  # not visible until the block ends
    assert path.read_bytes() == b"\0" * 4 + b"\1" * 4 + b"\2" * 4
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_open_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"partial")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_written_files_and_folders_get_the_usual_modes(tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (private 0600/0700), but the result must
    have the modes open()/mkdir() give, or other users cannot read a shared model."""
    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with atomic_dir(tmp_path / "model") as d:
        (d / "config.json").write_text("{}")
    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(tmp_path / "atomic.txt") == mode(plain_file)
    assert mode(tmp_path / "model") == mode(plain_dir)
