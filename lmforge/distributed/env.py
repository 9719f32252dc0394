"""The process group of a torchrun launch: who am I, who else is there, and how we talk.

``torchrun`` (torch.distributed.elastic) starts ``--nproc-per-node`` copies of the command
on each of ``--nnodes`` machines and gives each process its coordinates in the
environment: ``RANK`` (0 .. WORLD_SIZE-1, global), ``LOCAL_RANK`` (on this machine),
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (the rendezvous store) and
``TORCHELASTIC_RESTART_COUNT`` (how many times the group was restarted after a failure).

The backend follows the device: NCCL between GPUs, gloo between CPU processes. Every
collective has a timeout (``train.dist_timeout`` seconds), so a rank that dies or hangs
ends the job with an error instead of a silent wait.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError


def launched() -> bool:
    """Was this process started by torchrun (or another launcher that sets RANK)?"""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def restart_count() -> int:
    """How many times torchrun has restarted the worker group (``--max-restarts``)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: torch.device, timeout_s: float) -> DistEnv:
    """Join the process group described by torchrun's environment (once per process).

    On CUDA each process takes the GPU ``LOCAL_RANK``. Returns this process's coordinates.
    """
    if not launched():
        raise ConfigError("train.distributed needs a torchrun launch (RANK and WORLD_SIZE "
                          "are not set): run torchrun --nproc-per-node N -m lmforge ...")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but this machine has "
                              f"{torch.cuda.device_count()} GPU(s); start at most that many "
                              "processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = backend_for(device)
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        # torchrun keeps its key-value store across restarts (--max-restarts): a prefix
        # per attempt keeps the new group from reading the dead group's addresses.
        store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
        store = dist.PrefixStore(f"lmforge/attempt_{restart_count()}/", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timeout)
    return DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=local_rank, backend=backend, device=device)


def join_launch(strategy: str, device: torch.device, timeout_s: float) -> DistEnv | None:
    """Join torchrun's group when ``train.distributed`` asks for it (None for ``none``).

    A multi-process launch of a ``none`` run is refused: each process would train the
    same model alone and write the same run folder."""
    if strategy == "none":
        world = os.environ.get("WORLD_SIZE", "1")
        if launched() and world != "1":
            raise ConfigError(f"started by torchrun with WORLD_SIZE={world} but "
                              "train.distributed is none; add --set train.distributed=ddp "
                              "(or fsdp, tp, pp)")
        return None
    return init_distributed(device, timeout_s)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def is_main_process() -> bool:
    """Rank 0 of an initialised group, or a process that is not part of one."""
    return not dist.is_initialized() or dist.get_rank() == 0


def broadcast_object(obj: object, src: int = 0) -> object:
    """``obj`` of rank ``src`` on every rank (a picklable Python object)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistEnv", "launched", "join_launch", "restart_count", "init_distributed", "barrier",
           "is_main_process", "broadcast_object", "destroy", "backend_for"]
