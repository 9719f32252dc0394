"""Greedy decoding of a GPT-2-small-shaped model: lmforge vs transformers ``generate()``.

The weights are random, created by ``transformers`` (``GPT2LMHeadModel(GPT2Config())``,
12 layers, 12 heads, 768 dims, vocab 50257), saved with ``save_pretrained`` to a temp
folder and loaded into lmforge with :func:`lmforge.hub.load_pretrained`, so both
libraries decode the same weights. Each library runs in fp32 and with bf16 weights; the
issue's targets compare the best lmforge variant with transformers' best of those two.

lmforge also runs with int8 linear layers (:mod:`lmforge.compress.quantize`): ``int8``
(weights only) and ``int8-dyn`` (weights and activations, fbgemm). For a like-for-like
check, transformers runs with ``torch.ao.quantization.quantize_dynamic`` too
(``transformers int8-dyn``, the same fbgemm kernels); the ``*_vs_int8_peer`` lines compare
against the best transformers variant including that one. GPT-2 in transformers computes
its attention and MLP projections with ``Conv1D`` modules, which ``quantize_dynamic``
does not touch, so the bench first swaps each for the equivalent ``nn.Linear``
(:func:`conv1d_to_linear`) to make every projection of the peer int8. How much int8 changes the
output is printed as the largest logit difference to fp32 along the same greedy path.

Figures (medians over interleaved repetitions, all in this one process):

- batch 1 and batch 8 tokens/s: a 32-token prompt, then ``--new`` greedy tokens
  (128; 32 with ``--quick``); lmforge ``generate_ids`` vs ``model.generate(
  do_sample=False)``; the time includes the prefill;
- time to first token for a 512-token prompt (prefill + one token), batch 1;
- the memory-bandwidth ceiling of batch-1 decode: bytes of weights read per token
  (every parameter except the position table, of which one row is read) / read
  bandwidth measured here by summing a 1 GiB array (best of several).

Equivalence: along transformers' fp32 greedy path, lmforge's next-token logits (prefill,
then one token at a time through its KV cache) must agree within 1e-4; the bench stops
if they do not.

Run ``python bench/decode.py`` (``--quick`` for fewer tokens and repetitions).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
import warnings

import torch

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


def greedy_logit_gap(ref, model, prompt: torch.Tensor, n_new: int) -> float:
    """Max |logit difference| of ``model`` to ``ref`` along ``ref``'s greedy path."""
    with torch.inference_mode():
        path = prompt
        gap = 0.0
        for _ in range(n_new):
            a, b = ref(path, last_only=True)[0, -1], model(path, last_only=True)[0, -1]
            gap = max(gap, (a.float() - b.float()).abs().max().item())
            path = torch.cat([path, a.argmax().view(1, 1)], dim=1)
        return gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repetitions")
    ap.add_argument("--new", type=int, default=None, help="new tokens per prompt")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    args = ap.parse_args()
    n_new = args.new or (32 if args.quick else 128)
    reps = args.reps or (2 if args.quick else 3)

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from lmforge.generate import GenerationConfig, generate_ids
    from lmforge.hub import load_pretrained

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    hf32 = GPT2LMHeadModel(GPT2Config()).eval()
    hf32.generation_config.eos_token_id = None  # never stop early: time n_new tokens
    hf32.generation_config.pad_token_id = 0
    with tempfile.TemporaryDirectory() as tmp:
        hf32.save_pretrained(tmp)
        lmf32, _ = load_pretrained(tmp)
        lmf16, _ = load_pretrained(tmp, dtype=torch.bfloat16)
        lmf8, _ = load_pretrained(tmp, quantize="int8")
        lmf8d, _ = load_pretrained(tmp, quantize="int8-dynamic")
    hf16 = copy.deepcopy(hf32).to(torch.bfloat16).eval()
    hf8d = torch.ao.quantization.quantize_dynamic(conv1d_to_linear(copy.deepcopy(hf32)),
                                                  {torch.nn.Linear}, dtype=torch.qint8)

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

    int8_diff = {name: greedy_logit_gap(lmf32, m, prompts[1], n_check)
                 for name, m in (("int8", lmf8), ("int8-dyn", lmf8d))}
    print("int8: max |logit diff| to lmforge fp32 along its greedy path: " +
          ", ".join(f"{k} {v:.3f}" for k, v in int8_diff.items()))

    impls = {"transformers fp32": (run_hf, hf32), "transformers bf16": (run_hf, hf16),
             "transformers int8-dyn": (run_hf, hf8d),
             "lmforge fp32": (run_lmf, lmf32), "lmforge bf16": (run_lmf, lmf16),
             "lmforge int8": (run_lmf, lmf8), "lmforge int8-dyn": (run_lmf, lmf8d)}
    tasks = {"b1": (prompts[1], n_new), "b8": (prompts[8], n_new), "ttft": (long_prompt, 1)}
    for fn, model in impls.values():  # warm-up
        fn(model, prompts[1], 2)
        fn(model, prompts[8], 2)
    times = {(t, i): [] for t in tasks for i in impls}
    bw = read_bandwidth()
    for _ in range(reps):
        for task, (ids, n) in tasks.items():
            for name, (fn, model) in impls.items():
                t0 = time.perf_counter()
                fn(model, ids, n)
                times[task, name].append(time.perf_counter() - t0)
        bw = max(bw, read_bandwidth())

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {(t, i): len(tasks[t][0]) * tasks[t][1] / med[t, i] for t in ("b1", "b8")
            for i in impls}
    ceiling = {"fp32": bw / weight_bytes(lmf32), "bf16": bw / weight_bytes(lmf16),
               "int8": bw / weight_bytes(lmf8), "int8-dyn": bw / weight_bytes(lmf8d)}

    print(f"GPT-2-small shape, random weights; prompt {PROMPT}, {n_new} new tokens, greedy; "
          f"TTFT prompt {TTFT_PROMPT}; {reps} interleaved reps (median), "
          f"{torch.get_num_threads()} threads")
    print(f"read bandwidth {bw / 1e9:.1f} GB/s; batch-1 ceiling "
          f"{ceiling['fp32']:.1f} tok/s fp32 weights ({weight_bytes(lmf32) / 1e6:.0f} MB), "
          f"{ceiling['bf16']:.1f} bf16, {ceiling['int8']:.1f} int8 "
          f"({weight_bytes(lmf8) / 1e6:.0f} MB)")
    print(f"{'implementation':<24}{'b1 tok/s':>10}{'of ceiling':>12}{'b8 tok/s':>10}"
          f"{'TTFT 512 (ms)':>15}")
    for name in impls:
        dt = name.split()[-1]
        print(f"{name:<24}{rate['b1', name]:>10.1f}{rate['b1', name] / ceiling[dt]:>12.1%}"
              f"{rate['b8', name]:>10.1f}{med['ttft', name] * 1e3:>15.0f}")

    def best(lib: str, key, higher: bool = True, int8_peer: bool = False):
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
    for line in lines:
        out = {"bench": "decode", **{k: (round(v, 4) if isinstance(v, float) else v)
                                     for k, v in line.items()}}
        out["met"] = line["ratio"] >= line["target"]
        print(json.dumps(out))
    print(json.dumps({"bench": "decode", "metric": "max_logit_diff_fp32", "lmforge": diff,
                      "peer": 0.0, "peer_name": "transformers fp32", "ratio": diff,
                      "target": TOL, "met": diff <= TOL}))


if __name__ == "__main__":
    main()
