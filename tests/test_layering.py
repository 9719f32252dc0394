"""Layering: the recipe layer (``lmforge.config``) sits above the library.

``lmforge/config.py`` knows the registries (models, objectives, the trainer's options);
nothing below it may import it back. This test reads every module of the package with
``ast`` (no import is executed), collects every ``import`` and ``from ... import``
statement, including those inside functions, and builds the import graph. Importing
``a.b.c`` also runs the packages ``a`` and ``a.b``, so those count as imported too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lmforge

ROOT = Path(lmforge.__file__).parent
CONFIG = "lmforge.config"

# Packages that are below the recipe layer: none of their modules may reach config.
LOWER = ("lmforge.models", "lmforge.nn", "lmforge.train", "lmforge.generate", "lmforge.hf",
         "lmforge.tokenize", "lmforge.data", "lmforge.compress", "lmforge.hardware",
         "lmforge.validation")


def _lazy_names() -> dict[str, dict[str, str]]:
    """Packages that resolve names lazily (module ``__getattr__``): package -> {name:
    module}. ``from lmforge.train import Trainer`` imports ``lmforge.train.trainer``."""
    import lmforge.train

    return {"lmforge": {n: m for n, (m, _attr) in lmforge._LAZY.items()},
            "lmforge.train": {n: f"lmforge.train.{m}" for n, m in lmforge.train._WHERE.items()}}


LAZY = _lazy_names()


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package of lmforge."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The lmforge modules that ``name`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                base_parts = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one, and a
            # lazily resolved name imports the module that defines it.
            lazy = LAZY.get(base, {})
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                                if f"{base}.{alias.name}" in modules] + [
                lazy[alias.name] for alias in node.names if alias.name in lazy]
        else:
            continue
        for target in targets:
            found.update(m for m in _with_parents(target) if m in modules)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _path_to(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain ``start -> ... -> goal``, or None."""
    prev: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph.get(node, ())):
            if nxt in prev:
                continue
            prev[nxt] = node
            if nxt == goal:
                chain = [goal]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return chain[::-1]
            queue.append(nxt)
    return None


def test_graph_sees_known_imports():
    """The parser itself works: function-level, relative and package imports count."""
    graph = _graph()
    assert "lmforge.models" in graph[CONFIG]          # Recipe._model: from .models import ...
    assert "lmforge.train.tasks" in graph[CONFIG]     # function-level, relative
    assert "lmforge.train" in graph[CONFIG]           # the package of train.tasks
    assert "lmforge.errors" in graph["lmforge.models.base"]


def test_no_import_circle_through_config():
    graph = _graph()
    circles = []
    for dep in sorted(graph[CONFIG]):
        chain = _path_to(graph, dep, CONFIG)
        if chain:
            circles.append(" -> ".join([CONFIG, *chain]))
    assert not circles, "lmforge.config is imported back:\n" + "\n".join(circles)


def test_lower_layers_do_not_reach_config():
    graph = _graph()
    bad = []
    for name in sorted(graph):
        if name.startswith(tuple(p + "." for p in LOWER)) or name in LOWER:
            chain = _path_to(graph, name, CONFIG)
            if chain:
                bad.append(" -> ".join(chain))
    assert not bad, "modules below the recipe layer import lmforge.config:\n" + "\n".join(bad)
