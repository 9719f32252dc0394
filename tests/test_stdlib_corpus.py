"""The python-stdlib corpus: the interpreter's own standard-library sources."""

from __future__ import annotations

import itertools
import re

from lmforge.corpora import iter_stdlib_documents, stdlib_dir, stdlib_files, stdlib_identifiers


def test_files_are_sorted_deterministic_and_skip_tests():
    files = stdlib_files()
    assert len(files) > 100
    assert files == stdlib_files()
    rel = [p.relative_to(stdlib_dir()).as_posix() for p in files]
    assert rel == sorted(rel)
    assert "os.py" in rel and "json/__init__.py" in rel
    for r in rel:
        parts = r.split("/")
        assert r.endswith(".py")
        assert not {"site-packages", "dist-packages", "__pycache__"} & set(parts)
        assert not {"test", "tests", "idle_test"} & set(parts[:-1])
    with_tests = stdlib_files(include_tests=True)
    assert set(files) < set(with_tests)


def test_documents_decode_and_include_os(tmp_path):
    docs = dict(iter_stdlib_documents())
    assert len(docs) > 100 and all(isinstance(t, str) for t in docs.values())
    os_py = stdlib_dir() / "os.py"
    assert "def makedirs" in docs[os_py]
    # a non-UTF-8 file is skipped, a UTF-8 one kept; folders named test are skipped
    (tmp_path / "good.py").write_text("x = 'é'\n", encoding="utf-8")
    (tmp_path / "bad.py").write_bytes(b"x = '\xff'\n")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text("y = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    got = [(p.name, t) for p, t in iter_stdlib_documents(root=tmp_path)]
    assert got == [("good.py", "x = 'é'\n")]
    assert [p.name for p, _ in iter_stdlib_documents(True, root=tmp_path)] == ["good.py", "t.py"]


def test_identifiers():
    ids = list(itertools.islice(stdlib_identifiers(), 20000))
    assert len(ids) == 20000
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", x) for x in ids)
    assert {"def", "import", "return", "self"} <= set(ids)
    assert ids == list(itertools.islice(stdlib_identifiers(), 20000))
