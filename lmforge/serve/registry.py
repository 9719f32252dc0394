"""The model registry: a folder of ``NAME/VERSION/`` model folders.

``lmforge serve --registry models/`` serves every ``NAME`` in ``models/`` at its latest
``VERSION``; an admin can then load another version, which takes the traffic at once
while the old one finishes what it is doing (:meth:`lmforge.serve.app.Server.switch`).
Versions sort naturally: ``2`` before ``10``, ``v1.9`` before ``v1.10``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..paths import plain_name
from .models import ModelSpec


def _natural(text: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)
            if p]


def versions(root: Path, name: str) -> list[str]:
    """The versions of ``name`` in the registry, oldest first; ``name`` must be a folder
    name (``../x`` or ``/x`` would reach outside the registry)."""
    folder = Path(root) / plain_name(name, DataError, "model name")
    if not folder.is_dir():
        raise DataError(f"the registry {root} has no model {name!r}")
    found = sorted((p.name for p in folder.iterdir()
                    if p.is_dir() and not p.name.startswith(".")), key=_natural)
    if not found:
        raise DataError(f"the registry has no version of {name!r} ({folder} is empty)")
    return found


def resolve(root: Path, name: str, version: str | None = None) -> ModelSpec:
    """The spec of ``name`` at ``version`` (default: the latest)."""
    have = versions(root, name)
    version = version or have[-1]
    if version not in have:
        raise DataError(f"model {name!r} has no version {version!r} in the registry "
                        f"(versions: {', '.join(have)})")
    return ModelSpec(name, str(Path(root) / name / version), version)


def registry_specs(root: Path) -> list[ModelSpec]:
    """Every model of the registry at its latest version."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"the registry {root} is not a folder")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"the registry {root} holds no models (expected NAME/VERSION/ "
                        "folders)")
    return [resolve(root, n) for n in names]
