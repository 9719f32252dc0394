"""Data-parallel training on the CPU: one process with 2 threads against 2 processes with
1 thread each (torchrun, gloo), and what each rank holds under DDP and FSDP2.

    python bench/distributed.py [--steps 20] [--d-model 256] [--layers 6] [--batch 16]

Every row trains the same Llama-style GPT on the same global batch (``--batch`` windows
of ``--block`` random tokens) with AdamW in fp32, through lmforge's strategies
(:mod:`lmforge.distributed.strategy`): ``wrap`` and ``grad_sync`` as the trainer uses
them. Figures, per configuration:

* ``step_ms``: the median wall time of an update (forward, backward, gradient
  synchronisation, AdamW), after 3 warm-up updates;
* ``exposed_comm``: the share of that time spent waiting for gradient communication,
  ``(t - t_nosync) / t``, where ``t_nosync`` is the same update with the gradient
  all-reduce (DDP) or reduce-scatter (FSDP) switched off (FSDP still all-gathers its
  weights in that run, so its figure counts only the gradient reduction);
* ``param_mb``, ``grad_mb``, ``optim_mb``: the bytes of parameters, gradients and AdamW
  moments this rank holds (its shard under FSDP), and ``peak_rss_mb`` (VmHWM).

The table compares 2 x 1 against 1 x 2 (ratio = 1 x 2 time / 2 x 1 time, above 1 means
the two processes are faster) and FSDP's per-rank state against DDP's (about 1/N).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import emit, machine_line

HERE = Path(__file__).resolve()


def _local(t):
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def _mb(tensors) -> float:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors) / 2**20


def worker(args) -> None:
    """One rank (or the single process): train, time, measure, print RESULT on rank 0."""
    import torch
    import torch.nn.functional as F

    from lmforge.distributed.env import init_distributed
    from lmforge.distributed.strategy import make_strategy
    from lmforge.models.gpt import GPT, GPTConfig

    torch.set_num_threads(args.threads)
    env = init_distributed(torch.device("cpu"), 600) if args.worker != "none" else None
    strategy = make_strategy(args.worker, env)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=args.vocab, n_layer=args.layers, n_head=args.d_model // 64,
                    n_kv_head=args.d_model // 64, d_model=args.d_model,
                    d_ff=int(8 * args.d_model / 3) // 64 * 64, max_seq_len=args.block,
                    style="llama", dropout=0.0)
    model = GPT(cfg)
    train_model = strategy.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    per_rank = args.batch // strategy.dp_size
    gen = torch.Generator().manual_seed(1 + strategy.rank)

    def update(sync: bool) -> float:
        x = torch.randint(0, args.vocab, (per_rank, args.block + 1), generator=gen)
        t0 = time.perf_counter()
        with strategy.grad_sync(train_model, sync):
            logits = train_model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    def timed(sync: bool) -> float:
        for _ in range(3):
            update(sync)
        times = []
        for _ in range(args.steps):
            if env is not None:
                torch.distributed.barrier()
            times.append(update(sync))
        return statistics.median(times)

    step = timed(True)
    nosync = timed(False) if strategy.distributed else step
    # one more backward to measure the gradients this rank holds
    x = torch.randint(0, args.vocab, (per_rank, args.block + 1), generator=gen)
    logits = train_model(x[:, :-1])
    F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1)).backward()
    params = list(model.parameters())
    result = {
        "step_ms": step * 1e3, "nosync_ms": nosync * 1e3,
        "exposed_comm": max(0.0, (step - nosync) / step) if strategy.distributed else 0.0,
        "param_mb": _mb(params), "grad_mb": _mb([p.grad for p in params if p.grad is not None]),
        "optim_mb": _mb([v for s in opt.state.values() for v in s.values()
                         if isinstance(v, torch.Tensor) and v.dim() > 0]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in GPT(cfg).parameters()),
    }
    if env is not None:
        gathered = [None] * env.world_size
        torch.distributed.all_gather_object(gathered, result)
        torch.distributed.destroy_process_group()
        # per-rank state: the largest rank; time: rank 0's (the ranks wait for each other)
        result = {**gathered[0], **{k: max(g[k] for g in gathered)
                                    for k in ("param_mb", "grad_mb", "optim_mb",
                                              "peak_rss_mb")}}
        if env.rank != 0:
            return
    print("RESULT " + json.dumps(result), flush=True)


def state(r: dict) -> float:
    """A rank's training state in MB: parameters + gradients + AdamW moments."""
    return r["param_mb"] + r["grad_mb"] + r["optim_mb"]


def run(kind: str, procs: int, threads: int, args) -> dict:
    opts = ["--steps", str(args.steps), "--d-model", str(args.d_model), "--layers",
            str(args.layers), "--batch", str(args.batch), "--block", str(args.block),
            "--vocab", str(args.vocab), "--worker", kind, "--threads", str(threads)]
    if procs == 1:
        cmd = [sys.executable, str(HERE), *opts]
    else:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", str(procs),
               "--master-port", str(args.port), str(HERE), *opts]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{kind} x{procs} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16, help="global batch (windows)")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--port", type=int, default=29517)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args)

    print(machine_line())
    rows = {"1 proc x 2 threads": run("none", 1, 2, args),
            "2 procs x 1 thread (DDP)": run("ddp", 2, 1, args),
            "2 procs x 1 thread (FSDP)": run("fsdp", 2, 1, args)}
    base = rows["1 proc x 2 threads"]
    n = base["parameters"]
    print(f"GPT llama d{args.d_model} x{args.layers} layers, vocab {args.vocab}: "
          f"{n / 1e6:.1f}M parameters; global batch {args.batch} x {args.block} tokens; "
          f"fp32 AdamW")
    print(f"{'configuration':<28}{'step ms':>9}{'vs 1x2':>8}{'exposed comm':>14}"
          f"{'params MB':>11}{'grads MB':>10}{'AdamW MB':>10}{'peak RSS MB':>13}")
    for name, r in rows.items():
        print(f"{name:<28}{r['step_ms']:>9.1f}{base['step_ms'] / r['step_ms']:>7.2f}x"
              f"{100 * r['exposed_comm']:>13.1f}%{r['param_mb']:>11.1f}{r['grad_mb']:>10.1f}"
              f"{r['optim_mb']:>10.1f}{r['peak_rss_mb']:>13.0f}")
    ddp, fsdp = rows["2 procs x 1 thread (DDP)"], rows["2 procs x 1 thread (FSDP)"]
    print(f"FSDP keeps {state(fsdp) / state(ddp):.2f} of DDP's per-rank state "
          f"(parameters + gradients + AdamW); 1/N = {1 / 2:.2f}")
    size = {"parameters": n, "global_batch": args.batch, "block": args.block}
    for name, r in rows.items():
        emit({"bench": "distributed", "figure": "step_ms", "config": name, **size,
              "lmforge": round(r["step_ms"], 2), "peer": round(base["step_ms"], 2),
              "peer_name": "1 proc x 2 threads",
              "ratio": round(base["step_ms"] / r["step_ms"], 3),
              "exposed_comm": round(r["exposed_comm"], 4)})
    for name, r in (("ddp", ddp), ("fsdp", fsdp)):
        emit({"bench": "distributed", "figure": "per_rank_state_mb", "strategy": name,
              **size, "param_mb": round(r["param_mb"], 2), "grad_mb": round(r["grad_mb"], 2),
              "optim_mb": round(r["optim_mb"], 2), "total_mb": round(state(r), 2),
              "peak_rss_mb": round(r["peak_rss_mb"], 1)})
    emit({"bench": "distributed", "figure": "fsdp_state_share", **size,
          "lmforge": round(state(fsdp) / state(ddp), 4), "target": 0.5, "world_size": 2})


if __name__ == "__main__":
    main()
