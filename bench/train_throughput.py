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
  ``Trainer.fit`` runs per step minus logging; also forced to bf16 for reference.

MFU = achieved FLOP/s / matmul peak, with FLOPs per token = 6 N + 12 L d T (Kaplan /
PaLM: N parameters, attention scores and values over context T). The peaks are 2048^2
matmuls measured in this script (fp32 and bf16).

Run ``python bench/train_throughput.py`` (``--quick`` for fewer steps). Prints a table,
then one JSON object per figure.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

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


def make_lmforge_step(precision: str):
    """The per-step work of ``Trainer.fit`` (forward_backward, clip, AdamW, zero_grad)."""
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

    def step(x, y):
        with autocast(device, amp):
            loss, _, _ = objective(model, (x, y))
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return model, step, amp


def build_impls(with_bf16_lmforge: bool):
    from transformers import GPT2Config, GPT2LMHeadModel

    impls = {}
    for name, dtype in (("transformers fp32", None), ("transformers bf16", torch.bfloat16)):
        torch.manual_seed(0)
        hf = GPT2LMHeadModel(GPT2Config(
            vocab_size=VOCAB, n_positions=CONTEXT, n_embd=D_MODEL, n_layer=N_LAYER,
            n_head=N_HEAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=0, eos_token_id=0, use_cache=False)).train()
        impls[name] = (hf, make_plain_step(hf, lambda m, x: m(input_ids=x).logits, dtype))
    for name, dtype in (("nanogpt fp32", None), ("nanogpt bf16", torch.bfloat16)):
        torch.manual_seed(0)
        nano = NanoGPT().train()
        impls[name] = (nano, make_plain_step(nano, lambda m, x: m(x), dtype))
    torch.manual_seed(0)
    model, step, amp = make_lmforge_step("auto")
    auto = "fp32" if amp is None else "bf16"
    impls[f"lmforge auto ({auto})"] = (model, step)
    if with_bf16_lmforge and amp is None:
        torch.manual_seed(0)
        model, step, _ = make_lmforge_step("bf16")
        impls["lmforge bf16"] = (model, step)
    return impls, f"lmforge auto ({auto})", amp


# ----------------------------------------------------------------- measurements

def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n matmul in ``dtype``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_token(n_params: int) -> float:
    return 6 * n_params + 12 * N_LAYER * D_MODEL * CONTEXT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (for make bench)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round")
    ap.add_argument("--reps", type=int, default=None, help="rounds over all implementations")
    ap.add_argument("--no-lmforge-bf16", action="store_true",
                    help="skip the forced-bf16 lmforge row when auto picks fp32")
    args = ap.parse_args()
    steps = args.steps or (2 if args.quick else 4)
    reps = args.reps or (2 if args.quick else 3)

    torch.manual_seed(0)
    impls, lmf_name, lmf_amp = build_impls(not args.no_lmforge_bf16)
    x = torch.randint(0, VOCAB, (BATCH, CONTEXT))
    y = torch.randint(0, VOCAB, (BATCH, CONTEXT))

    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    for _, step in impls.values():  # warm-up: allocator, oneDNN primitives, AdamW state
        step(x, y)
        step(x, y)
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(reps):
        for _ in range(steps):  # one step of each implementation in turn
            for name, (_, step) in impls.items():
                t = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - t)
        again = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        peak = {k: max(peak[k], again[k]) for k in peak}  # best seen: least disturbed

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
                      "mfu_fp32": best / peak["fp32"], "mfu_bf16": best / peak["bf16"],
                      "mfu_med_fp32": achieved / peak["fp32"],
                      "mfu_med_bf16": achieved / peak["bf16"],
                      "spread": (min(times[name]), max(times[name]))}

    print(f"baby GPT {N_LAYER}L {N_HEAD}H {D_MODEL}d, context {CONTEXT}, vocab {VOCAB}, "
          f"batch {BATCH}; {reps} rounds x {steps} steps, {torch.get_num_threads()} threads")
    print(f"matmul 2048^2 peak: fp32 {peak['fp32']:.0f} GFLOP/s, "
          f"bf16 {peak['bf16']:.0f} GFLOP/s")
    print("MFU = best step's FLOP/s / best matmul peak (median step's in brackets)")
    print(f"{'implementation':<24}{'tok/s':>8}{'GFLOP/s':>9}{'MFU fp32':>16}"
          f"{'MFU bf16':>16}{'step min-max (s)':>18}")
    for name, r in rows.items():
        lo, hi = r["spread"]
        print(f"{name:<24}{r['tok_s']:>8.0f}{r['gflops']:>9.1f}"
              f"{r['mfu_fp32']:>8.1%} ({r['mfu_med_fp32']:>5.1%})"
              f"{r['mfu_bf16']:>8.1%} ({r['mfu_med_bf16']:>5.1%})"
              f"{lo:>10.2f}-{hi:.2f}")

    lmf = rows[lmf_name]
    own = "fp32" if lmf_amp is None else "bf16"
    figures = [
        ("tok_per_s_vs_hf_fp32", lmf["tok_s"], rows["transformers fp32"]["tok_s"],
         "transformers fp32", 3.0),
        ("tok_per_s_vs_hf_bf16", lmf["tok_s"], rows["transformers bf16"]["tok_s"],
         "transformers bf16", 1.35),
    ]
    for metric, ours, peer, peer_name, target in figures:
        ratio = ours / peer
        # ratio of the best steps too: on a loaded machine the medians can drift apart
        best_ratio = rows[peer_name]["spread"][0] / lmf["spread"][0]
        print(json.dumps({"bench": "train_throughput", "metric": metric,
                          "lmforge": round(ours, 1), "peer": round(peer, 1),
                          "peer_name": peer_name, "ratio": round(ratio, 3),
                          "target": target, "met": ratio >= target,
                          "ratio_best_step": round(best_ratio, 3)}))
    # MFU against the peak of the precision lmforge trains in here, and against bf16.
    for metric, value in ((f"mfu_{own}_peak", lmf[f"mfu_{own}"]),
                          ("mfu_bf16_peak", lmf["mfu_bf16"])):
        print(json.dumps({"bench": "train_throughput", "metric": metric,
                          "lmforge": round(value, 4), "peer": round(peak[metric[4:8]], 1),
                          "peer_name": f"{metric[4:8]} matmul GFLOP/s (2048^2)",
                          "ratio": round(value, 4), "target": 0.35, "met": value >= 0.35}))


if __name__ == "__main__":
    main()
