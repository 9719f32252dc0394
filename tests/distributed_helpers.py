"""Run a function on several CPU processes joined in a gloo process group (the tests'
stand-in for ``torchrun --nproc-per-node N``).

``run_ranks(fn, world_size, *args)`` starts ``world_size`` processes; process ``r`` sets
the variables torchrun would set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT`` = a free port), runs on
one thread, joins the gloo group, calls ``fn(r, world_size, *args)`` and destroys the
group. ``fn`` must be a module-level function (it is pickled into the children) and its
return value is sent back (through ``torch.save``): ``run_ranks`` returns the list of
every rank's result, in rank order. When a rank raises, the other ranks stop (their
collectives fail or they are killed) and the parent raises ``RuntimeError`` with the
traceback of the rank that failed first: the cause, not a peer's lost connection.

The processes are forked from a multiprocessing fork server that has imported torch
once (per test session), instead of each importing it anew: about 0.2 s a start on 2
cores instead of 4-9 s. The server only imports; it never computes, so no OpenMP
thread pool is forked (forking the pytest process itself, which has computed, is not
safe).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# A rank stuck in a collective (its peer died) fails after this long instead of hanging.
COLLECTIVE_TIMEOUT = timedelta(seconds=120)
PRELOAD = ["torch", "torch.distributed.tensor", "torch.distributed.pipelining"]
PORT_TRIES = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, fn, world_size: int, port: int, out_dir: str, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size,
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        result = fn(rank, world_size, *args)
    except BaseException:  # written before the peers notice, so the oldest is the cause
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def run_ranks(fn, world_size: int, *args) -> list:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo processes; return the
    results in rank order.

    The port is chosen free but only bound when rank 0 starts the rendezvous store, so
    another process (an xdist worker's test) can take it in between: a start that fails
    with ``EADDRINUSE`` is tried again on a new port, up to ``PORT_TRIES`` times."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    for attempt in range(1, PORT_TRIES + 1):
        with tempfile.TemporaryDirectory(prefix="lmforge-ranks-") as out_dir:
            try:
                mp.start_processes(_rank_main,
                                   args=(fn, world_size, free_port(), out_dir, args),
                                   nprocs=world_size, join=True, start_method="forkserver")
            except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
                errors = sorted(Path(out_dir).glob("rank*.err"),
                                key=lambda f: f.stat().st_mtime_ns)
                if not errors and "EADDRINUSE" in str(err) and attempt < PORT_TRIES:
                    continue  # the port was taken before the store bound it
                if not errors:  # killed by a signal, or failed outside fn
                    raise RuntimeError(f"a rank of {fn.__name__} died: {err}") from None
                raise RuntimeError(f"{errors[0].stem} of {fn.__name__} failed first:\n"
                                   f"{errors[0].read_text()}") from None
            return [torch.load(Path(out_dir) / f"rank{rank}.pt", weights_only=False)
                    for rank in range(world_size)]
    raise AssertionError("unreachable: the last try returns or raises")
