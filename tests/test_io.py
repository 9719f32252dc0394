"""Atomic writes: a failed write leaves the old file and no temp file behind."""

from __future__ import annotations

import pytest

from lmforge.io import atomic_open, atomic_write_bytes


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
