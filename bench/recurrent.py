"""Recurrent layers: the fused path against the readable loop (and torch.nn).

Times one forward + backward pass of lmforge's LSTM and GRU (batch 32, 64 steps, input
and hidden 256, 2 layers by default) with ``fused=True`` (PyTorch's fused kernels,
oneDNN on CPU / cuDNN on GPU) and ``fused=False`` (the per-step loop of the equations),
plus ``torch.nn.LSTM``/``GRU`` as a check that the fused path adds no overhead. Prints
a table headed by the machine (CPU, ISA, threads), then one JSON line per figure with the
machine tag (``cpu``, ``isa``, ``isa_caps``, ``threads``) and the device. ``ratio`` is a
speed-up: peer ms / lmforge ms. Everything runs in fp32, so nothing is skipped on CPUs
without bf16 instructions.

Time bounds: the three variants of a cell run in turn, ``--reps`` times (15) or until
``--budget`` seconds (12) per cell are spent, after one warm-up pass each: 10-15 s for
both cells on 2 cores, about a minute when other jobs load them heavily.

    python bench/recurrent.py [--batch 32 --seq 64 --hidden 256 --layers 2 --threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from _common import emit, machine_line

from lmforge.nn.recurrent import GRU, LSTM


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor, fused: bool | None = None) -> float:
    """Milliseconds of one forward + backward pass (``fused``: which lmforge path)."""
    if fused is not None:
        module.fused = fused
    t0 = time.perf_counter()
    module.zero_grad(set_to_none=True)
    out, _ = module(x)
    out.sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def time_round_robin(variants: dict[str, Callable[[], float]], reps: int,
                     budget_s: float) -> dict[str, float]:
    """Median ms of each variant, run in turn (so load from other processes hits all
    of them alike), after one warm-up pass each."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in variants}
    start = time.perf_counter()
    for _ in range(reps):
        for k, run in variants.items():
            times[k].append(run())
        if time.perf_counter() - start > budget_s:
            break
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--budget", type=float, default=12.0, help="seconds per cell")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    H = args.hidden
    x = torch.randn(args.batch, args.seq, H, device=device)
    rows, lines = [], []
    for name, ours_cls, ref_cls in (("lstm", LSTM, torch.nn.LSTM), ("gru", GRU, torch.nn.GRU)):
        ours = ours_cls(H, H, args.layers, batch_first=True).to(device)
        ref = ref_cls(H, H, args.layers, batch_first=True).to(device)
        ref.load_state_dict(ours.state_dict())

        ms = time_round_robin({"fused": partial(fwd_bwd, ours, x, True),
                               "loop": partial(fwd_bwd, ours, x, False),
                               "torch": partial(fwd_bwd, ref, x)}, args.reps, args.budget)
        fused, loop, torch_ms = ms["fused"], ms["loop"], ms["torch"]
        rows.append((name, fused, loop, torch_ms))
        lines.append({"bench": "recurrent", "metric": f"{name}_fwd_bwd_ms_fused",
                      "lmforge": round(fused, 2), "peer": round(loop, 2),
                      "peer_name": "readable loop", "ratio": round(loop / fused, 2),
                      "target": None, "met": None})
        lines.append({"bench": "recurrent", "metric": f"{name}_fwd_bwd_ms_fused_vs_torch",
                      "lmforge": round(fused, 2), "peer": round(torch_ms, 2),
                      "peer_name": f"torch.nn.{ref_cls.__name__}",
                      "ratio": round(torch_ms / fused, 2), "target": None, "met": None})

    print(machine_line())
    print(f"forward+backward, batch {args.batch}, seq {args.seq}, hidden {H}, "
          f"{args.layers} layers, {device}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"{'cell':<6}{'fused ms':>10}{'readable ms':>13}{'readable/fused':>16}"
          f"{'torch.nn ms':>13}")
    for name, fused, loop, torch_ms in rows:
        print(f"{name:<6}{fused:>10.2f}{loop:>13.2f}{loop / fused:>15.2f}x{torch_ms:>13.2f}")
    for line in lines:
        emit({**line, "device": device})


if __name__ == "__main__":
    main()
