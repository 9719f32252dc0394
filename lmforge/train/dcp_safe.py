"""Loading a ``torch.distributed.checkpoint`` (DCP) folder without running code from it.

DCP's own reader unpickles two things with the full :mod:`pickle`, which can run any code
the file's author wrote: the folder's ``.metadata`` (``FileSystemReader.read_metadata``,
``pickle.load``) and every non-tensor value, such as an optimizer's learning rate
(``DefaultLoadPlanner.load_bytes``, ``torch.load(weights_only=False)``). Here:

- the metadata goes through :class:`_MetadataUnpickler`, whose ``find_class`` resolves only
  DCP's metadata records (the dataclasses and enums of
  ``torch.distributed.checkpoint.metadata`` and the file reader's ``_StorageInfo``),
  ``torch.Size``, torch dtypes, torch's layout lookup and :mod:`pathlib` paths, and
  refuses every other global;
- non-tensor values are read with ``torch.load(weights_only=True)``, as every other
  ``torch.load`` in lmforge.

Tensors themselves were already read with ``weights_only=True`` by DCP.
"""

from __future__ import annotations

import inspect
import io
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, _StorageInfo

from ..errors import CheckpointError
from ..io import torch_load_error

_PATHS = frozenset({"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"})


def _allowed(module: str, name: str) -> Any:
    """The global ``module.name`` when the metadata may name it (module docstring)."""
    if module == dcp_metadata.__name__:
        obj = getattr(dcp_metadata, name, None)
        if inspect.isclass(obj) and obj.__module__ == module:
            return obj
    elif module == _StorageInfo.__module__ and name == _StorageInfo.__name__:
        return _StorageInfo
    elif module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None),
                                                             torch.dtype)):
        return getattr(torch, name)
    elif (module, name) == ("torch.serialization", "_get_layout"):
        return torch.serialization._get_layout
    elif module == "pathlib" and name in _PATHS:
        import pathlib

        return getattr(pathlib, name)
    return None


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed(module, name)
        if obj is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in DCP "
                                         "metadata")
        return obj


class SafeReader(FileSystemReader):
    """DCP's file reader with the metadata read by :class:`_MetadataUnpickler`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        path = Path(self._get_metadata_path(kwargs.get("rank")))
        try:
            with open(path, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
                AttributeError) as e:
            raise CheckpointError(f"{path} is corrupt or unsafe: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                  ) from None
        if not isinstance(metadata, dcp_metadata.Metadata):
            raise CheckpointError(f"{path} is corrupt: not DCP metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafePlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor values read by ``torch.load(weights_only=True)``
    (the parent's ``load_bytes`` with that one argument changed)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        obj = torch.load(value, map_location="cpu", weights_only=True)
        fqn = read_item.dest_index.fqn
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def safe_load(state_dict: dict[str, Any], folder: str | Path) -> None:
    """``dcp.load(state_dict, checkpoint_id=folder)`` with :class:`SafeReader` and
    :class:`SafePlanner` (module docstring). A hostile or damaged folder raises a one-line
    :class:`CheckpointError` (DCP's own ``CheckpointException`` is a ``BaseException``
    holding each rank's traceback)."""
    reader = SafeReader(folder)
    reader.read_metadata()  # its error, before DCP folds it into its own
    try:
        dcp.load(state_dict, storage_reader=reader, planner=SafePlanner())
    except CheckpointException as e:
        failures = list(getattr(e, "failures", {}).values())
        cause = failures[0][0] if failures else e
        raise CheckpointError(f"{folder}: {torch_load_error(cause)}") from None


__all__ = ["SafePlanner", "SafeReader", "safe_load"]
