"""Training throughput of the baby GPT: lmforge vs transformers and a nanoGPT-style model.

The model is 6 layers, 6 heads, 384 dims, 256 context, vocab 166, batch 16 (GELU-tanh
MLP, learned positions, tied embeddings, no dropout). A step is forward, cross-entropy,
backward, gradient clipping at 1.0 and one AdamW update; tokens per second are the
median step of each implementation.

Implementations, all timed in this one process with their repetitions interleaved
(one step of each implementation in turn, ``--reps`` x ``--steps`` steps each) so that
load from other jobs on a shared machine hits them all alike:

- ``transformers`` ``GPT2LMHeadModel``, fp32 and bf16 autocast, ``torch.optim.AdamW``
  (foreach) over all parameters, the way a plain training loop uses it;
- ``nanogpt``: a minimal nanoGPT-style model written below (fused qkv, SDPA), fp32 and
  bf16 autocast, same optimizer as the transformers runs;
- ``lmforge``: ``lmforge.models.gpt.GPT`` driven by the trainer's own pieces
  (:func:`lmforge.train.resolve_precision` with ``precision: auto``,
  :class:`lmforge.train.CausalLMObjective` under the trainer's autocast,
  :func:`lmforge.train.build_optimizer`, foreach gradient clipping), i.e. what
  ``Trainer.fit`` runs per step minus logging; also forced to bf16 for reference;
- with ``--compile``, ``lmforge compiled``: the same step with the model wrapped in
  ``torch.compile`` (default mode, inductor), as ``train.compile: true`` does; the
  compile time (first step minus an eager step) is printed and reported.

``--profile`` runs ``torch.profiler`` over lmforge's step and prints where the time goes
(matmuls, attention, GELU, norms, optimizer, rest). The roofline line gives the fastest
step the fp32 (or bf16) matmul peak allows: the FLOPs of a step / the peak.

**bf16 where it is emulated.** On a CPU without bf16 instructions (AVX2 only, or oneDNN
capped with ``ONEDNN_MAX_CPU_ISA=AVX2``) a bf16 matmul is emulated, ~100x slower than
fp32 (0.9 against ~100 GFLOP/s), and one bf16 step of this model takes minutes. Where
:func:`lmforge.hardware.bf16_speed` (the same cached measurement ``precision: auto``
uses) reports bf16 as emulated, the script therefore does not run the ``transformers
bf16``, ``nanogpt bf16`` and forced ``lmforge bf16`` rows, nor the bf16 matmul peak, bf16
MFU and bf16 roofline: the table shows ``skipped: bf16 is emulated on this CPU (X GFLOP/s
vs Y fp32)`` for each, and the JSON lines that compare against them
(``tok_per_s_vs_hf_bf16``, ``mfu_bf16_peak``) carry ``"skipped": "<reason>"`` with
``lmforge``, ``peer``, ``ratio`` and ``met`` null. lmforge's ``auto`` row is whatever
:func:`lmforge.train.resolve_precision` picks (fp32 there); the forced-bf16 row is only
added where ``auto`` picks fp32 and bf16 is not emulated.

glibc's malloc gives freed blocks back to the kernel (trim, and mmap for large blocks),
so an implementation that allocates many large temporaries pays page faults on every
step, and how many depends on what ran before it in the same process: interleaved with
the other models, ``transformers`` fp32 took 200k faults and ~1 s extra a step. The
script therefore raises glibc's trim and mmap thresholds first (``mallopt``, what a
jemalloc/tcmalloc preload also achieves), which helps the peers, not lmforge (0 faults a
step either way).

MFU = achieved FLOP/s / matmul peak, with FLOPs per token = 6 N + 12 L d T (Kaplan /
PaLM: N parameters, attention scores and values over context T). The peaks are 2048^2
matmuls measured in this script (fp32, and bf16 where it is not emulated) with
:func:`lmforge.hardware.matmul_rate` (time-bounded: the best product of ~1 s of them),
before the timed rounds and after each; the best is kept.

Time bounds: ``--budget`` seconds (default 600, 240 with ``--quick``) of timed steps;
after the first round no further cycle (one step of each implementation) starts once it
is spent, and the rounds and steps actually run are printed and reported (``rounds``,
``steps`` in each JSON line). A step takes ~1-6 s on 2 cores, so the defaults (3 rounds
x 4 steps, ``--quick`` 2 x 3) normally end well within the budget: on 2 cores shared
with two other busy jobs the whole script took 4-5 minutes at full size and 1-3 with
``--quick``, with bf16 native or emulated (fewer rows run there).

Run ``python bench/train_throughput.py`` (``--quick`` for fewer steps). Prints a table
headed by the machine (CPU, ISA, threads), then one JSON object per figure, each with the
machine tag (``cpu``, ``isa``, ``isa_caps``, ``threads``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from _common import Budget, bf16_skip_reason, emit, machine_line, skipped_row
from torch import nn

from lmforge.hardware import matmul_rate

N_LAYER, N_HEAD, D_MODEL, CONTEXT, VOCAB, BATCH = 6, 6, 384, 256, 166, 16


# ----------------------------------------------------------------- nanoGPT-style reference

class _NanoBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.fc = nn.Linear(D_MODEL, 4 * D_MODEL)
        self.out = nn.Linear(4 * D_MODEL, D_MODEL)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D_MODEL)
        self.wpe = nn.Embedding(CONTEXT, D_MODEL)
        self.blocks = nn.ModuleList(_NanoBlock() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)
        self.head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------- step functions

def _autocast(dtype):
    import contextlib
    return contextlib.nullcontext() if dtype is None else \
        torch.autocast("cpu", dtype=dtype)


def make_plain_step(model: nn.Module, logits_fn, dtype):
    """forward + CE + backward + clip + AdamW for a peer model."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(x, y):
        with _autocast(dtype):
            logits = logits_fn(model, x)
        loss = F.cross_entropy(logits.float().view(-1, VOCAB), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return step


def make_lmforge_step(precision: str, compile: bool = False):
    """The per-step work of ``Trainer.fit`` (forward_backward, clip, AdamW, zero_grad);
    ``compile`` wraps the model in ``torch.compile`` the way ``train.compile`` does."""
    from lmforge.config import TrainConfig
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.train import CausalLMObjective, build_optimizer, param_groups, resolve_precision
    from lmforge.train.precision import autocast

    cfg = TrainConfig(precision=precision, device="cpu", batch_size=BATCH,
                      block_size=CONTEXT, lr=1e-4, weight_decay=0.1, grad_clip=1.0)
    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=N_LAYER, n_head=N_HEAD,
                          d_model=D_MODEL, max_seq_len=CONTEXT)).train()
    device = torch.device("cpu")
    amp = resolve_precision(cfg.precision, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = build_optimizer(model, cfg)
    objective = CausalLMObjective()
    params = [p for g in param_groups(model, 0.0) for p in g["params"]]
    net = torch.compile(model) if compile else model

    def step(x, y):
        with autocast(device, amp):
            loss, _, _ = objective(net, (x, y))
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return model, step, amp


def build_impls(with_bf16_lmforge: bool, with_compiled: bool = False,
                bf16_skip: str | None = None):
    """``(rows, lmforge auto row's name, its autocast dtype)``; ``rows`` maps each
    implementation to ``(model, step)``, or to the reason it is skipped (``bf16_skip``:
    bf16 is emulated here, so no bf16 row is built)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    rows: dict[str, tuple | str] = {}
    for name, dtype in (("transformers fp32", None), ("transformers bf16", torch.bfloat16)):
        if dtype is not None and bf16_skip:
            rows[name] = bf16_skip
            continue
        torch.manual_seed(0)
        hf = GPT2LMHeadModel(GPT2Config(
            vocab_size=VOCAB, n_positions=CONTEXT, n_embd=D_MODEL, n_layer=N_LAYER,
            n_head=N_HEAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=0, eos_token_id=0, use_cache=False)).train()
        rows[name] = (hf, make_plain_step(hf, lambda m, x: m(input_ids=x).logits, dtype))
    for name, dtype in (("nanogpt fp32", None), ("nanogpt bf16", torch.bfloat16)):
        if dtype is not None and bf16_skip:
            rows[name] = bf16_skip
            continue
        torch.manual_seed(0)
        nano = NanoGPT().train()
        rows[name] = (nano, make_plain_step(nano, lambda m, x: m(x), dtype))
    torch.manual_seed(0)
    model, step, amp = make_lmforge_step("auto")  # lmforge's resolve_precision decides
    auto = "fp32" if amp is None else "bf16"
    rows[f"lmforge auto ({auto})"] = (model, step)
    if with_bf16_lmforge and amp is None:
        if bf16_skip:
            rows["lmforge bf16"] = bf16_skip
        else:
            torch.manual_seed(0)
            model, step, _ = make_lmforge_step("bf16")
            rows["lmforge bf16"] = (model, step)
    if with_compiled:
        torch.manual_seed(0)
        model, step, _ = make_lmforge_step("auto", compile=True)
        rows["lmforge compiled"] = (model, step)
    return rows, f"lmforge auto ({auto})", amp


# ----------------------------------------------------------------- measurements

def keep_freed_memory() -> None:
    """Stop glibc returning freed heap to the kernel (M_TRIM_THRESHOLD) and serve blocks
    up to 32 MiB from the heap (M_MMAP_THRESHOLD), so steps do not page-fault."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def matmul_peaks(bf16: bool) -> dict[str, float]:
    """GFLOP/s of 2048^2 matmuls, fp32 and (``bf16``) bf16: best product of ~1 s each,
    time-bounded by :func:`lmforge.hardware.matmul_rate`."""
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bf16 else {})}
    return {k: matmul_rate(dt, 2048, 1.0) for k, dt in dtypes.items()}


def flops_per_token(n_params: int) -> float:
    return 6 * n_params + 12 * N_LAYER * D_MODEL * CONTEXT


# aten op -> what it is, for the profile summary (first matching prefix wins)
PROFILE_GROUPS = (("aten::mm", "matmul"), ("aten::addmm", "matmul"), ("aten::bmm", "matmul"),
                  ("aten::_scaled_dot_product", "attention (SDPA)"),
                  ("aten::gelu", "GELU fwd+bwd"), ("aten::native_layer_norm", "layer norm"),
                  ("aten::_fused_adamw", "AdamW + clipping"),
                  ("aten::linalg_vector_norm", "AdamW + clipping"),
                  ("aten::copy_", "copies"), ("aten::cat", "copies"))


def profile_step(step, x, y, steps: int = 3) -> None:
    """torch.profiler over ``steps`` steps: self CPU time per op group, then the top ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(x, y)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        group = next((g for prefix, g in PROFILE_GROUPS if e.key.startswith(prefix)),
                     "everything else")
        groups[group] = groups.get(group, 0.0) + e.self_cpu_time_total
    print(f"torch.profiler, lmforge step ({steps} steps, self CPU time per step):")
    for group, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<20}{us / steps / 1e3:>9.1f} ms {us / total:>7.1%}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (for make bench)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round")
    ap.add_argument("--reps", type=int, default=None, help="rounds over all implementations")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed steps; after the first round no new cycle "
                         "starts once spent (default 600, --quick 240)")
    ap.add_argument("--no-lmforge-bf16", action="store_true",
                    help="skip the forced-bf16 lmforge row when auto picks fp32")
    ap.add_argument("--compile", action="store_true",
                    help="add lmforge with torch.compile (train.compile: true)")
    ap.add_argument("--profile", action="store_true",
                    help="print a torch.profiler breakdown of lmforge's step")
    args = ap.parse_args()
    t_start = time.perf_counter()
    steps = args.steps or (3 if args.quick else 4)
    reps = args.reps or (2 if args.quick else 3)
    budget_s = args.budget if args.budget is not None else (240.0 if args.quick else 600.0)

    keep_freed_memory()
    bf16_skip = bf16_skip_reason()  # lmforge.hardware.bf16_speed(), cached for the process
    torch.manual_seed(0)
    all_rows, lmf_name, lmf_amp = build_impls(not args.no_lmforge_bf16, args.compile,
                                              bf16_skip)
    impls = {k: v for k, v in all_rows.items() if not isinstance(v, str)}
    x = torch.randint(0, VOCAB, (BATCH, CONTEXT))
    y = torch.randint(0, VOCAB, (BATCH, CONTEXT))

    peak = matmul_peaks(bf16=not bf16_skip)
    first: dict[str, float] = {}
    for name, (_, step) in impls.items():  # warm-up: allocator, oneDNN, AdamW state, compile
        t = time.perf_counter()
        step(x, y)
        first[name] = time.perf_counter() - t
        step(x, y)
    times: dict[str, list[float]] = {k: [] for k in impls}
    budget = Budget(budget_s)
    setup_s = budget.start - t_start
    rounds_run = 0
    for r in range(reps):
        if r and budget.spent():
            break
        for _ in range(steps):  # one step of each implementation in turn
            if r and budget.spent():
                break
            for name, (_, step) in impls.items():
                t = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - t)
        rounds_run += 1
        again = matmul_peaks(bf16=not bf16_skip)
        peak = {k: max(peak[k], again[k]) for k in peak}  # best seen: least disturbed
    samples = len(times[lmf_name])
    timed_s = time.perf_counter() - budget.start

    tokens = BATCH * CONTEXT
    rows = {}
    for name, (model, _) in impls.items():
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        med = statistics.median(times[name])
        tps = tokens / med
        achieved = tps * flops_per_token(n_params) / 1e9
        # The peak is a best-of, so MFU also uses the best step (both least disturbed by
        # other jobs); the median-step MFU is printed beside it.
        best = tokens / min(times[name]) * flops_per_token(n_params) / 1e9
        rows[name] = {"tok_s": tps, "gflops": achieved, "n_params": n_params,
                      "spread": (min(times[name]), max(times[name]))}
        for prec in peak:
            rows[name][f"mfu_{prec}"] = best / peak[prec]
            rows[name][f"mfu_med_{prec}"] = achieved / peak[prec]

    print(machine_line())
    cut = "" if samples == reps * steps else \
        f" (cut by the {budget_s:.0f} s budget from {reps} x {steps})"
    print(f"baby GPT {N_LAYER}L {N_HEAD}H {D_MODEL}d, context {CONTEXT}, vocab {VOCAB}, "
          f"batch {BATCH}; {samples} timed steps per implementation in {rounds_run} "
          f"rounds{cut}; {setup_s:.0f} s setup and warm-up, {timed_s:.0f} s timed")
    print(f"matmul 2048^2 peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 " +
          (f"{peak['bf16']:.0f} GFLOP/s" if "bf16" in peak else f"skipped: {bf16_skip}"))
    print("MFU = best step's FLOP/s / best matmul peak (median step's in brackets)")
    print(f"{'implementation':<24}{'tok/s':>8}{'GFLOP/s':>9}{'MFU fp32':>16}"
          f"{'MFU bf16':>16}{'step min-max (s)':>18}")

    def mfu(r: dict, prec: str) -> str:
        if prec not in peak:
            return f"{'-':>16}"
        return f"{r[f'mfu_{prec}']:>8.1%} ({r[f'mfu_med_{prec}']:>5.1%})"

    for name, entry in all_rows.items():
        if isinstance(entry, str):
            print(skipped_row(name, entry))
            continue
        r = rows[name]
        lo, hi = r["spread"]
        print(f"{name:<24}{r['tok_s']:>8.0f}{r['gflops']:>9.1f}{mfu(r, 'fp32')}"
              f"{mfu(r, 'bf16')}{lo:>10.2f}-{hi:.2f}")

    lmf = rows[lmf_name]
    own = "fp32" if lmf_amp is None else "bf16"
    # Roofline: a step's FLOPs at the matmul peak, with nothing else costing any time.
    hf_med = tokens / rows["transformers fp32"]["tok_s"]
    hf_best = rows["transformers fp32"]["spread"][0]
    for prec in ("fp32", "bf16"):
        if prec not in peak:
            print(f"roofline {prec}: skipped: {bf16_skip}")
            continue
        fastest = tokens * flops_per_token(lmf["n_params"]) / (peak[prec] * 1e9)
        print(f"roofline {prec}: a step at the {prec} matmul peak takes {fastest:.2f} s "
              f"({tokens / fastest:.0f} tok/s): at most {hf_med / fastest:.2f}x transformers "
              f"fp32's median step, {hf_best / fastest:.2f}x its best step")
    run = {"lmforge_variant": lmf_name, "rounds": rounds_run, "steps": samples}
    if "lmforge compiled" in rows:
        compile_s = first["lmforge compiled"] - statistics.median(times["lmforge compiled"])
        speedup = rows["lmforge compiled"]["tok_s"] / lmf["tok_s"]
        print(f"torch.compile: {compile_s:.1f} s to compile, then {speedup:.2f}x "
              f"{lmf_name}")
        emit({"bench": "train_throughput", "metric": "compile_speedup",
              "lmforge": round(rows["lmforge compiled"]["tok_s"], 1),
              "peer": round(lmf["tok_s"], 1), "peer_name": lmf_name,
              "ratio": round(speedup, 3), "target": None, "met": None,
              "compile_s": round(compile_s, 1), **run})
    if args.profile:
        profile_step(impls[lmf_name][1], x, y)
    for metric, peer_name, target in (("tok_per_s_vs_hf_fp32", "transformers fp32", 3.0),
                                      ("tok_per_s_vs_hf_bf16", "transformers bf16", 1.35)):
        line = {"bench": "train_throughput", "metric": metric, "lmforge": None, "peer": None,
                "peer_name": peer_name, "ratio": None, "target": target, "met": None}
        if peer_name not in rows:
            emit({**line, "ratio_best_step": None, **run}, skipped=all_rows[peer_name])
            continue
        ours, peer = lmf["tok_s"], rows[peer_name]["tok_s"]
        ratio = ours / peer
        # ratio of the best steps too: on a loaded machine the medians can drift apart
        best_ratio = rows[peer_name]["spread"][0] / lmf["spread"][0]
        emit({**line, "lmforge": round(ours, 1), "peer": round(peer, 1),
              "ratio": round(ratio, 3), "met": ratio >= target,
              "ratio_best_step": round(best_ratio, 3), **run})
    # MFU against the peak of the precision lmforge trains in here, and against bf16.
    for prec in dict.fromkeys((own, "bf16")):
        line = {"bench": "train_throughput", "metric": f"mfu_{prec}_peak", "lmforge": None,
                "peer": None, "peer_name": f"{prec} matmul GFLOP/s (2048^2)", "ratio": None,
                "target": 0.35, "met": None, **run}
        if prec not in peak:
            emit(line, skipped=bf16_skip)
            continue
        value = lmf[f"mfu_{prec}"]
        emit({**line, "lmforge": round(value, 4), "peer": round(peak[prec], 1),
              "ratio": round(value, 4), "met": value >= 0.35})


if __name__ == "__main__":
    main()
