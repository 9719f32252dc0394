"""The ``python-stdlib`` corpus: the running interpreter's standard library sources.

A real, local, license-clean code corpus that needs no download: every ``.py`` file under
``sysconfig.get_paths()["stdlib"]``, in sorted (deterministic) order.

What is left out, and why:

* ``site-packages`` / ``dist-packages``: third-party code, different on every machine;
* ``__pycache__``: compiled files only;
* test suites (folders named ``test``, ``tests``, ``idle_test``), unless
  ``include_tests=True``: they are large, repetitive, and some files are deliberately
  malformed (``lib2to3`` test data holds Python 2 and badly encoded sources);
* files that are not valid UTF-8 (a few legacy test files): skipped by
  :func:`iter_stdlib_documents`.

``idlelib`` and the other application packages are kept: they are ordinary Python code.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
TEST_DIRS = frozenset({"test", "tests", "idle_test"})
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def stdlib_dir() -> Path:
    """The folder of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(include_tests: bool = False, root: str | os.PathLike | None = None
                 ) -> list[Path]:
    """Every ``.py`` file of the standard library, sorted by relative path.

    ``root`` overrides the folder (for tests); test-suite folders are skipped unless
    ``include_tests``.
    """
    base = Path(root) if root is not None else stdlib_dir()
    skip = EXCLUDED_DIRS if include_tests else EXCLUDED_DIRS | TEST_DIRS
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if name.endswith(".py"):
                p = Path(dirpath) / name
                found.append((p.relative_to(base).as_posix(), p))
    found.sort(key=lambda t: t[0])
    return [p for _rel, p in found]


def iter_stdlib_documents(include_tests: bool = False,
                          root: str | os.PathLike | None = None
                          ) -> Iterator[tuple[Path, str]]:
    """``(path, text)`` for every standard-library file that is valid UTF-8, in order."""
    for p in stdlib_files(include_tests, root):
        try:
            text = p.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield p, text


def stdlib_identifiers(include_tests: bool = False,
                       root: str | os.PathLike | None = None) -> Iterator[str]:
    """Identifier-like tokens (``[A-Za-z_][A-Za-z0-9_]*``) of the standard library, in order.

    A plain regex over the whole text (comments and strings included): a simple, large
    token stream for word-embedding benchmarks on code.
    """
    for _p, text in iter_stdlib_documents(include_tests, root):
        for m in IDENTIFIER_RE.finditer(text):
            yield m.group()


__all__ = ["EXCLUDED_DIRS", "IDENTIFIER_RE", "TEST_DIRS", "iter_stdlib_documents",
           "stdlib_dir", "stdlib_files", "stdlib_identifiers"]
