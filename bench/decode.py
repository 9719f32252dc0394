"""Greedy decoding of a GPT-2-small-shaped model: lmforge vs transformers ``generate()``.

The weights are random, created by ``transformers`` (``GPT2LMHeadModel(GPT2Config())``,
12 layers, 12 heads, 768 dims, vocab 50257), saved with ``save_pretrained`` to a temp
folder and loaded into lmforge with :func:`lmforge.hub.load_pretrained`, so both
libraries decode the same weights. Each library runs in fp32 and with bf16 weights; the
issue's targets compare the best lmforge variant with transformers' best of those two
(of the rows that ran: see below).

lmforge also runs with int8 linear layers (:mod:`lmforge.compress.quantize`): ``int8``
(weights only) and ``int8-dyn`` (weights and activations, fbgemm). For a like-for-like
check, transformers runs with ``torch.ao.quantization.quantize_dynamic`` too
(``transformers int8-dyn``, the same fbgemm kernels); the ``*_vs_int8_peer`` lines compare
against the best transformers variant including that one. GPT-2 in transformers computes
its attention and MLP projections with ``Conv1D`` modules, which ``quantize_dynamic``
does not touch, so the bench first swaps each for the equivalent ``nn.Linear``
(:func:`conv1d_to_linear`) to make every projection of the peer int8. How much int8 changes the
output is printed as the largest logit difference to the same library's fp32 model along
its greedy path (32 tokens, 128 at full size), both decoding through their KV caches as
generation does (so the 1-row decode kernels are the ones checked), for lmforge's int8
variants and for the peer's (``max_logit_diff_int8_dyn_vs_fp32``).

**Reduced range, like for like.** Without VNNI (or with ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``)
fbgemm's u8 x s8 products saturate in int16, so lmforge's ``int8-dynamic`` quantises
activations to 7 bits ("reduced range") exactly where
:func:`lmforge.hardware.int8_dynamic_saturates` says so. The peer's int8 row uses
``reduce_range`` under the same condition (:func:`quantize_dynamic_peer`): torch 2.13's
dynamic ``Linear`` always passes ``reduce_range=True`` to the kernel, whatever the
qconfig says, so where lmforge uses 8-bit activations (VNNI) the peer's modules are put
on torch's own 8-bit path (module ``version`` 3), and a check asserts that the peer's
layers compute ``quantized.linear_dynamic(x, W, reduce_range)``. Both then run the same
kernel at the same activation precision; the range does not change the kernel's speed.

**bf16 where it is emulated.** On a CPU without bf16 instructions (AVX2 only, or oneDNN
capped with ``ONEDNN_MAX_CPU_ISA=AVX2``) bf16 matmuls are emulated, ~100x slower than
fp32, and a bf16 decode run would take hours. Where :func:`lmforge.hardware.bf16_speed`
reports bf16 as emulated, the ``transformers bf16`` and ``lmforge bf16`` rows and the
bf16 bandwidth ceiling are not run: the table shows ``skipped: bf16 is emulated on this
CPU (X GFLOP/s vs Y fp32)`` for each, every "best variant" figure takes the best of the
rows that ran, and its JSON line lists the skipped variants (``skipped_variants``,
``skipped_reason``). lmforge's ``int8`` (weight-only) layer multiplies int8 weights by
bf16 activations with ATen's own ``_weight_int8pack_mm`` kernel, not oneDNN; it is not
emulated there and stays in the table.

Figures (medians over interleaved repetitions, all in this one process):

- batch 1 and batch 8 tokens/s: a 32-token prompt, then ``--new`` greedy tokens
  (128; 32 with ``--quick``); lmforge ``generate_ids`` vs ``model.generate(
  do_sample=False)``; the time includes the prefill;
- time to first token for a 512-token prompt (prefill + one token), batch 1;
- the memory-bandwidth ceiling of batch-1 decode: bytes of weights read per token
  (every parameter except the position table, of which one row is read) / read
  bandwidth measured here by summing a 1 GiB array (best of 5, each ~50 ms).

Equivalence: along transformers' fp32 greedy path, lmforge's next-token logits (prefill,
then one token at a time through its KV cache) must agree within 1e-4; the bench stops
if they do not.

Time bounds: 3 interleaved repetitions (``--quick``: 3 with 32 new tokens), and no new
repetition starts after ``--budget`` seconds of timed repetitions (default 360, 60
with ``--quick``; the first always completes). A repetition of all seven rows takes
~65 s at full size and ~20 s with ``--quick`` on 2 cores without other load, so the
budget only cuts repetitions where other jobs slow the machine several-fold; the table
header gives the seconds of setup and of timed repetitions, and the ``reps`` field of
each line how many ran. On 2 cores shared with two other busy jobs the whole script took
8-10 minutes at full size and 1.5-2.5 with ``--quick``, bf16 native or emulated.

Run ``python bench/decode.py`` (``--quick`` for fewer tokens). Prints a table headed by
the machine (CPU, ISA, threads), then one JSON object per figure with the machine tag
(``cpu``, ``isa``, ``isa_caps``, ``threads``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings

import torch
from _common import Budget, bf16_skip_reason, emit, machine_line, skipped_row

from lmforge.hardware import int8_dynamic_saturates

PROMPT, TTFT_PROMPT, TOL = 32, 512, 1e-4


def read_bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Best-of-``reps`` bytes/s of reading a large fp32 array (``sum``)."""
    x = torch.ones(int(gib * 2 ** 30) // 4)
    x.sum()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: every parameter and buffer except the
    embedding tables (one row each is read), counting a tied head once."""
    seen = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def check_equivalence(hf, lmf, prompt: torch.Tensor, n_new: int) -> float:
    """Max |logit difference| along transformers' greedy path (fp32)."""
    with torch.inference_mode():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=n_new, min_new_tokens=n_new, output_logits=True,
                          return_dict_in_generate=True)
        hf_logits = torch.stack(out.logits, 1)[0]  # (n_new, V)
        path = out.sequences[0, prompt.shape[1]:]
        cache = lmf.new_cache(1, max_len=prompt.shape[1] + n_new)
        ours = [lmf(prompt, cache=cache, last_only=True)[0, -1]]
        for tok in path[:-1]:
            ours.append(lmf(tok.view(1, 1), cache=cache, last_only=True)[0, -1])
        return (torch.stack(ours).float() - hf_logits.float()).abs().max().item()


def conv1d_to_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every transformers ``Conv1D`` (``y = x W + b``, W of shape (in, out)) by
    the equivalent ``nn.Linear`` (weight ``W^T``), in place."""
    from transformers.pytorch_utils import Conv1D

    for name, child in list(model.named_children()):
        if isinstance(child, Conv1D):
            n_in, n_out = child.weight.shape
            lin = torch.nn.Linear(n_in, n_out)
            with torch.no_grad():
                lin.weight.copy_(child.weight.T)
                lin.bias.copy_(child.bias)
            setattr(model, name, lin)
        else:
            conv1d_to_linear(child)
    return model


def quantize_dynamic_peer(model: torch.nn.Module, reduce_range: bool) -> torch.nn.Module:
    """transformers' model with every projection a dynamic int8 ``Linear`` of
    ``torch.ao.quantization.quantize_dynamic`` (fbgemm), its activations in 7 bits
    exactly when ``reduce_range`` (see the module doc). In place."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    model = torch.ao.quantization.quantize_dynamic(conv1d_to_linear(model), {torch.nn.Linear},
                                                   dtype=torch.qint8)
    layers = [m for m in model.modules() if isinstance(m, DynamicLinear)]
    for layer in layers:
        # version >= 4: reduce_range=True on every call; below: the kernel's default, False
        layer.version = 4 if reduce_range else 3
    x = torch.randn(4, layers[0].in_features, generator=torch.Generator().manual_seed(0)) * 3
    want = torch.ops.quantized.linear_dynamic(x, layers[0]._packed_params._packed_params,
                                              reduce_range)
    if not torch.equal(layers[0](x), want):
        raise SystemExit("torch's dynamic Linear no longer follows its version for "
                         f"reduce_range; cannot give the peer reduce_range={reduce_range}")
    return model


def lmforge_stepper(model, max_len: int):
    """``step(ids) -> next-token logits``, feeding ``ids`` through the model's KV cache."""
    cache = model.new_cache(1, max_len=max_len)
    return lambda ids: model(ids, cache=cache, last_only=True)[0, -1]


def transformers_stepper(model, max_len: int):
    """The same for a transformers model (its ``DynamicCache``)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    return lambda ids: model(ids, cache=cache, use_cache=True).logits[0, -1]


def greedy_logit_gap(ref, model, prompt: torch.Tensor, n_new: int, stepper) -> float:
    """Max |logit difference| of ``model`` to ``ref`` along ``ref``'s greedy path of
    ``n_new`` tokens, both decoding through their KV caches (``stepper(model, max_len)``)
    the way generation does: the prompt's prefill, then one token per call."""
    with torch.inference_mode():
        step_ref = stepper(ref, prompt.shape[1] + n_new)
        step_model = stepper(model, prompt.shape[1] + n_new)
        a, b = step_ref(prompt), step_model(prompt)
        gap = (a.float() - b.float()).abs().max().item()
        for _ in range(n_new - 1):
            tok = a.argmax().view(1, 1)
            a, b = step_ref(tok), step_model(tok)
            gap = max(gap, (a.float() - b.float()).abs().max().item())
        return gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer new tokens")
    ap.add_argument("--new", type=int, default=None, help="new tokens per prompt")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed repetitions; no new one starts once spent "
                         "(default 360, --quick 60)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    n_new = args.new or (32 if args.quick else 128)
    reps = args.reps or 3
    budget_s = args.budget if args.budget is not None else (60.0 if args.quick else 360.0)

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from lmforge.generate import GenerationConfig, generate_ids
    from lmforge.hub import load_pretrained

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    bf16_skip = bf16_skip_reason()  # lmforge.hardware.bf16_speed(), cached for the process
    reduce_range = int8_dynamic_saturates()  # what lmforge's int8-dynamic layers use
    torch.manual_seed(0)
    hf32 = GPT2LMHeadModel(GPT2Config()).eval()
    hf32.generation_config.eos_token_id = None  # never stop early: time n_new tokens
    hf32.generation_config.pad_token_id = 0
    with tempfile.TemporaryDirectory() as tmp:
        hf32.save_pretrained(tmp)
        lmf32, _ = load_pretrained(tmp)
        lmf16 = None if bf16_skip else load_pretrained(tmp, dtype=torch.bfloat16)[0]
        lmf8, _ = load_pretrained(tmp, quantize="int8")
        lmf8d, _ = load_pretrained(tmp, quantize="int8-dynamic")
    hf16 = None if bf16_skip else copy.deepcopy(hf32).to(torch.bfloat16).eval()
    hf8d = quantize_dynamic_peer(copy.deepcopy(hf32), reduce_range)

    gen = torch.Generator().manual_seed(1)
    vocab = hf32.config.vocab_size
    prompts = {b: torch.randint(0, vocab, (b, PROMPT), generator=gen) for b in (1, 8)}
    long_prompt = torch.randint(0, vocab, (1, TTFT_PROMPT), generator=gen)

    n_check = min(n_new, 32) if args.quick else n_new
    diff = check_equivalence(hf32, lmf32, prompts[1], n_check)
    print(f"equivalence: max |logit diff| along transformers' greedy path "
          f"({n_check} tokens, fp32) = {diff:.2e} (tolerance {TOL:g})")
    if not diff <= TOL:
        raise SystemExit(f"lmforge's logits differ from transformers' by {diff:.3e} > {TOL}")

    def run_hf(model, ids, n):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=n, min_new_tokens=n)
        assert out.shape[1] == ids.shape[1] + n
        return out

    def run_lmf(model, ids, n):
        cfg = GenerationConfig(max_new_tokens=n, temperature=0.0, batch_size=len(ids))
        out = generate_ids(model, ids.tolist(), cfg)
        assert all(len(o) == n for o in out)
        return out

    int8_diff = {name: greedy_logit_gap(lmf32, m, prompts[1], n_check, lmforge_stepper)
                 for name, m in (("lmforge int8", lmf8), ("lmforge int8-dyn", lmf8d))}
    int8_diff["transformers int8-dyn"] = greedy_logit_gap(hf32, hf8d, prompts[1], n_check,
                                                          transformers_stepper)
    print(f"int8: max |logit diff| to the same library's fp32 along its greedy path "
          f"({n_check} tokens): " + ", ".join(f"{k} {v:.3f}" for k, v in int8_diff.items()) +
          f"; int8-dyn activations in {7 if reduce_range else 8} bits in both libraries"
          + (" (fbgemm without VNNI would saturate 8-bit ones)" if reduce_range else ""))

    # Every row, in table order: (run function, model), or the reason it is skipped.
    all_rows: dict[str, tuple | str] = {
        "transformers fp32": (run_hf, hf32),
        "transformers bf16": bf16_skip or (run_hf, hf16),
        "transformers int8-dyn": (run_hf, hf8d),
        "lmforge fp32": (run_lmf, lmf32),
        "lmforge bf16": bf16_skip or (run_lmf, lmf16),
        "lmforge int8": (run_lmf, lmf8), "lmforge int8-dyn": (run_lmf, lmf8d)}
    impls = {k: v for k, v in all_rows.items() if not isinstance(v, str)}
    skipped = {k: v for k, v in all_rows.items() if isinstance(v, str)}
    tasks = {"b1": (prompts[1], n_new), "b8": (prompts[8], n_new), "ttft": (long_prompt, 1)}
    for fn, model in impls.values():  # warm-up
        fn(model, prompts[1], 2)
        fn(model, prompts[8], 2)
    times = {(t, i): [] for t in tasks for i in impls}
    bw = read_bandwidth()
    budget = Budget(budget_s)
    setup_s = budget.start - t_start
    rounds_run = 0
    for r in range(reps):
        if r and budget.spent():
            break
        for task, (ids, n) in tasks.items():
            for name, (fn, model) in impls.items():
                t0 = time.perf_counter()
                fn(model, ids, n)
                times[task, name].append(time.perf_counter() - t0)
        bw = max(bw, read_bandwidth())
        rounds_run += 1
    timed_s = time.perf_counter() - budget.start

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {(t, i): len(tasks[t][0]) * tasks[t][1] / med[t, i] for t in ("b1", "b8")
            for i in impls}
    ceiling = {"fp32": bw / weight_bytes(lmf32), "int8": bw / weight_bytes(lmf8),
               "int8-dyn": bw / weight_bytes(lmf8d)}
    if lmf16 is not None:
        ceiling["bf16"] = bw / weight_bytes(lmf16)

    print(machine_line())
    cut = "" if rounds_run == reps else f" (cut by the {budget_s:.0f} s budget from {reps})"
    print(f"GPT-2-small shape, random weights; prompt {PROMPT}, {n_new} new tokens, greedy; "
          f"TTFT prompt {TTFT_PROMPT}; {rounds_run} interleaved reps (median){cut}; "
          f"{setup_s:.0f} s setup, {timed_s:.0f} s timed")
    bf16_ceiling = (f"{ceiling['bf16']:.1f} bf16" if "bf16" in ceiling
                    else f"bf16 skipped: {bf16_skip}")
    print(f"read bandwidth {bw / 1e9:.1f} GB/s; batch-1 ceiling "
          f"{ceiling['fp32']:.1f} tok/s fp32 weights ({weight_bytes(lmf32) / 1e6:.0f} MB), "
          f"{ceiling['int8']:.1f} int8 ({weight_bytes(lmf8) / 1e6:.0f} MB), {bf16_ceiling}")
    print(f"{'implementation':<24}{'b1 tok/s':>10}{'of ceiling':>12}{'b8 tok/s':>10}"
          f"{'TTFT 512 (ms)':>15}")
    for name, entry in all_rows.items():
        if isinstance(entry, str):
            print(skipped_row(name, entry))
            continue
        dt = name.split()[-1]
        print(f"{name:<24}{rate['b1', name]:>10.1f}{rate['b1', name] / ceiling[dt]:>12.1%}"
              f"{rate['b8', name]:>10.1f}{med['ttft', name] * 1e3:>15.0f}")

    def best(lib: str, key, higher: bool = True, int8_peer: bool = False):
        """The best variant of ``lib`` among the rows that ran."""
        names = [n for n in impls if n.startswith(lib)
                 and (int8_peer or lib == "lmforge" or "int8" not in n)]
        pick = (max if higher else min)(names, key=key)
        return pick, key(pick)

    lines = []
    for suffix, int8_peer in (("", False), ("_vs_int8_peer", True)):
        for metric, task, target in (("tok_per_s_b1", "b1", 2.0), ("tok_per_s_b8", "b8", 1.5)):
            ln, lv = best("lmforge", lambda n, t=task: rate[t, n])
            pn, pv = best("transformers", lambda n, t=task: rate[t, n], int8_peer=int8_peer)
            lines.append({"metric": metric + suffix, "lmforge": lv, "peer": pv,
                          "peer_name": pn, "ratio": lv / pv, "target": target,
                          "lmforge_variant": ln})
        ln, lv = best("lmforge", lambda n: med["ttft", n], higher=False)
        pn, pv = best("transformers", lambda n: med["ttft", n], higher=False,
                      int8_peer=int8_peer)
        lines.append({"metric": "ttft_ms_512" + suffix, "lmforge": lv * 1e3, "peer": pv * 1e3,
                      "peer_name": pn, "ratio": pv / lv, "target": 1.5, "lmforge_variant": ln})
    ln, _ = best("lmforge", lambda n: rate["b1", n] / ceiling[n.split()[-1]])
    dt = ln.split()[-1]
    lines.append({"metric": "b1_fraction_of_bandwidth_ceiling",
                  "lmforge": rate["b1", ln] / ceiling[dt], "peer": ceiling[dt],
                  "peer_name": f"bandwidth ceiling tok/s ({dt} weights)",
                  "ratio": rate["b1", ln] / ceiling[dt], "target": 0.8, "lmforge_variant": ln})
    extra = {"reps": rounds_run, "new_tokens": n_new}
    if skipped:  # the best-of figures above were taken over the rows that ran
        extra.update(skipped_variants=list(skipped),
                     skipped_reason="; ".join(dict.fromkeys(skipped.values())))
    for line in lines:
        out = {"bench": "decode", **{k: (round(v, 4) if isinstance(v, float) else v)
                                     for k, v in line.items()}}
        out["met"] = line["ratio"] >= line["target"]
        emit({**out, **extra})
    emit({"bench": "decode", "metric": "max_logit_diff_fp32", "lmforge": diff,
          "peer": 0.0, "peer_name": "transformers fp32", "ratio": diff,
          "target": TOL, "met": diff <= TOL, "tokens": n_check})
    emit({"bench": "decode", "metric": "max_logit_diff_int8_dyn_vs_fp32",
          "lmforge": round(int8_diff["lmforge int8-dyn"], 4),
          "peer": round(int8_diff["transformers int8-dyn"], 4),
          "peer_name": "transformers int8-dyn (quantize_dynamic)",
          "ratio": round(int8_diff["lmforge int8-dyn"] / int8_diff["transformers int8-dyn"], 4)
          if int8_diff["transformers int8-dyn"] else None,
          "target": None, "met": None, "tokens": n_check,
          "activation_bits": 7 if reduce_range else 8})


if __name__ == "__main__":
    main()
