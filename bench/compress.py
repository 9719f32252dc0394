"""Every compression method on the same two models, for size, speed and quality.

The two parents (issue 15): the quickstart GPT (``make quickstart``; ``--gpt``) and the
sentiment classifier of ``lmforge finetune classify-sentiment`` (``--classifier``). For
each, every method runs through :func:`lmforge.compression.command.compress` (the code
behind ``lmforge compress``) into ``--work/<model>/<row>``, and each folder is then
measured in a child process of its own, so that its peak memory is its own:

- **parameters** and **size on disk** (``model.safetensors``; for unstructured pruning
  also the bitmask + values file, ``sparse.safetensors``);
- **latency at batch 1 and 8**: one forward pass over 1 or 8 windows of the world's test
  text (the GPT: windows of its context, 64 tokens for the quickstart model, as in
  scoring or a prompt's prefill) or of encoded test reviews (the classifier); medians of
  repetitions after a warm-up;
- **throughput** at batch 8 of that forward pass (tokens/s or reviews/s), and for the GPT
  greedy generation speed, 32 tokens after a 16-token prompt at batch 1 and 8 (``gen b1``,
  ``gen b8``: generated tokens/s, prefill included);
- **peak memory**: the child's peak resident set (``VmHWM``); the table header gives
  that of a child that only imports torch and lmforge, so the difference is the model,
  its kernels' buffers and the activations;
- **quality** from the compression's own report: bits per sentence against the world's
  true surprisal (500 test sentences) and the grammatical share of 50 samples for the
  GPT; accuracy and macro-F1 on the test split (with its ceiling) for the classifier.

ONNX Runtime rows (fp32 and its own dynamic int8) run the exported model
(:mod:`lmforge.compress.onnx_export`) in the same child-process harness.

Targets (issue 15): int4 weight-only >= 5x smaller than fp32 with bits within 3%;
30% of heads and FFN neurons removed: >= 1.25x faster at batch 8 with quality within 2%
after fine-tuning; the distilled GPT student closer to the true surprisal than the same
student trained alone (``--alpha 0``, same data and steps); the classifier under ONNX
Runtime >= 1.3x faster than eager at batch 1 with identical test predictions.

Run ``python bench/compress.py`` (``--quick``: fewer fine-tuning steps and repetitions;
``--reuse``: keep the compressed folders of an earlier run). Prints a table per model,
then one JSON object per figure; draws a size-quality plot per model into
``docs/img/compress_<model>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import emit, machine_line

ROOT = Path(__file__).resolve().parent.parent

# (row name, method, options) per parent; "steps" None takes the method's default.
GPT_ROWS = [
    ("int8", "int8", {}),
    ("int8-dynamic", "int8-dynamic", {}),
    ("int4-g64", "int4", {"group_size": 64, "embeddings": "int8"}),
    ("int4-g32", "int4", {"group_size": 32, "embeddings": "int8"}),
    ("prune-50%", "prune", {"sparsity": 0.5}),
    ("prune-50%-gradual", "prune", {"sparsity": 0.5, "schedule": "gradual"}),
    ("structured-30%", "prune-structured", {"heads": 0.3, "ffn": 0.3}),
    ("lowrank-e0.9", "lowrank", {"energy": 0.9}),
    ("distill-half", "distill", {"student": "half"}),
    ("half-alone", "distill", {"student": "half", "alpha": 0.0}),
]
CLASSIFIER_ROWS = [
    ("int8", "int8", {}),
    ("int8-dynamic", "int8-dynamic", {}),
    ("int4-g64", "int4", {"group_size": 64, "embeddings": "int8"}),
    ("prune-50%", "prune", {"sparsity": 0.5}),
    ("structured-30%", "prune-structured", {"heads": 0.3, "ffn": 0.3}),
    ("lowrank-e0.9", "lowrank", {"energy": 0.9}),
    ("distill-half", "distill", {"student": "half", "steps": 600}),
    ("half-alone", "distill", {"student": "half", "alpha": 0.0, "steps": 600}),
    ("distill-bilstm", "distill", {"student": "bilstm", "steps": 600}),
    ("bilstm-alone", "distill", {"student": "bilstm", "alpha": 0.0, "steps": 600}),
]
QUALITY = {"gpt": ("bits_per_sentence", False), "classifier": ("accuracy", True)}


# ----------------------------------------------------------------------------- child

def _peak_mb() -> float:
    """This process's peak resident set (``VmHWM``: unlike ``ru_maxrss``, it starts
    afresh at ``exec``, so a child does not inherit its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_ms(fn, reps: int, warmup: int = 5) -> float:
    for _ in range(warmup):  # ONNX Runtime sizes its memory arena on the first calls
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _gpt_prompts(tok, n: int, length: int) -> list[list[int]]:
    """``n`` prompts of exactly ``length`` tokens from the world's test sentences."""
    from lmforge.corpora import lm_corpus

    out = []
    for it in lm_corpus("test", 4 * n, seed=0):
        ids = [tok.bos_id] + tok.encode(it.text)
        while len(ids) < length:
            ids += tok.encode(" " + it.text)
        out.append(ids[:length])
    return out[:n]


def gpt_inputs(tok, max_seq_len: int) -> dict:
    """8 windows of up to 128 tokens and 8 prompts of 16 (the world's test sentences)."""
    import torch

    return {"windows": torch.tensor(_gpt_prompts(tok, 8, min(128, max_seq_len))),
            "prompts": _gpt_prompts(tok, 8, 16)}


def _time_gpt(model, inputs: dict, reps: int) -> dict:
    """Forward latency over 128-token windows (scoring, prefill) at batch 1 and 8, and
    greedy generation speed (32 tokens after 16) at batch 1 and 8."""
    import torch

    from lmforge.generate import GenerationConfig
    from lmforge.generate.decode import generate_ids

    windows, prompts = inputs["windows"], inputs["prompts"]
    window = windows.shape[1]
    new = 32
    cfg = GenerationConfig(max_new_tokens=new, min_new_tokens=new, temperature=0,
                           batch_size=8)
    with torch.no_grad():
        b1 = _median_ms(lambda: model(windows[:1]), reps * 2)
        b8 = _median_ms(lambda: model(windows), reps)
        g1 = _median_ms(lambda: generate_ids(model, prompts[:1], cfg), reps)
        g8 = _median_ms(lambda: generate_ids(model, prompts, cfg), reps)
    return {"lat_b1_ms": b1, "lat_b8_ms": b8, "throughput": 8 * window * 1000 / b8,
            "gen_b1_tok_s": new * 1000 / g1, "gen_b8_tok_s": 8 * new * 1000 / g8}


def classifier_inputs(pred, n: int = 64) -> dict:
    """Encoded test reviews as model batches of 1 and 8 (the predictor's own encoding)."""
    from lmforge.corpora.tasks import render_task_set
    from lmforge.tasks.evaluation import collate

    reviews = [r["text"] for r in render_task_set(
        "sentiment", seed=1, sizes={"test": n}).splits["test"]]
    examples = pred._encode(pred.records(reviews))
    return {"batches": [collate(examples[:1], pred.tokenizer.pad_id, "classify"),
                        collate(examples[:8], pred.tokenizer.pad_id, "classify")]}


def _time_classifier(forward, batches: list[dict], reps: int) -> dict:
    b1 = _median_ms(lambda: forward(batches[0]), reps * 4)
    b8 = _median_ms(lambda: forward(batches[1]), reps * 2)
    return {"lat_b1_ms": b1, "lat_b8_ms": b8, "throughput": 8 * 1000 / b8}


def ort_forward(session):
    """``forward(batch) -> logits`` through an ONNX Runtime session (token types are
    zeros where the batch has none, as in the eager model)."""
    names = [i.name for i in session.get_inputs()]

    def forward(batch):
        feeds = {n: (batch[n] if n in batch else torch.zeros_like(batch["input_ids"])).numpy()
                 for n in names}
        return session.run(None, feeds)[0]

    import torch

    return forward


def measure_child(args) -> None:
    """The child: load the inputs, then one folder (or ONNX file), time it, print one JSON
    line with its peak memory."""
    import torch

    torch.manual_seed(0)
    inputs = torch.load(args.inputs, weights_only=True)
    if args.kind == "baseline":
        import lmforge.compress  # noqa: F401

        print(json.dumps({"peak_mb": _peak_mb()}), flush=True)
        return
    reps = args.reps
    if args.kind in ("gpt", "gpt-onnx"):
        if args.kind == "gpt":
            from lmforge.hub import load_pretrained

            model = load_pretrained(args.measure)[0]
        else:
            from lmforge.compress.onnx_decode import OnnxCausalLM

            model = OnnxCausalLM.load(args.measure)
        out = _time_gpt(model, inputs, reps)
    else:
        if args.kind == "classifier-onnx":
            from lmforge.compress.onnx_export import onnx_session

            forward = ort_forward(onnx_session(args.measure))
        else:
            from lmforge.models.base import load_model_folder
            from lmforge.tasks import model as _task_model  # noqa: F401  (arch "task")

            model = load_model_folder(args.measure)

            def forward(batch):
                with torch.no_grad():
                    return model(batch)
        out = _time_classifier(forward, inputs["batches"], reps)
    out["peak_mb"] = _peak_mb()
    print(json.dumps(out), flush=True)


def measure(folder: Path, kind: str, reps: int, inputs: Path) -> dict:
    """Run the child for ``folder`` on the saved ``inputs``; its JSON line."""
    r = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--kind", kind,
                        "--reps", str(reps), "--inputs", str(inputs)], capture_output=True,
                       text=True, env={**os.environ}, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"measuring {folder} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parent

def compress_rows(parent: Path, kind: str, rows, work: Path, quick: bool,
                  reuse: bool) -> dict[str, dict]:
    """``{row: report}``: each row's compression (reused when asked and present)."""
    from lmforge.compression.command import CompressOptions, compress

    reports = {}
    for name, method, options in rows:
        out = work / kind / name
        if reuse and (out / "report.json").is_file():
            reports[name] = json.loads((out / "report.json").read_text())
            continue
        shutil.rmtree(out, ignore_errors=True)
        options = dict(options)
        if quick:
            options["steps"] = min(options.get("steps") or 60, 60)
        print(f"[{kind}] {name}: lmforge compress --method {method} {options}", flush=True)
        t = time.perf_counter()
        reports[name] = compress(parent, CompressOptions(method=method, **options), out,
                                 show_progress=False, log=lambda _m: None)
        print(f"    {time.perf_counter() - t:.0f} s", flush=True)
    return reports


def onnx_rows(kind: str, parent, work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """Export the parent to ONNX (fp32, and ONNX Runtime's dynamic int8): the files and
    their quality (the GPT: the world measures through the ONNX decode loop; the
    classifier: test metrics and agreement with eager predictions)."""
    from lmforge.compress.onnx_export import export_model, onnx_session

    folder = work / kind / "onnx"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    exp = export_model(parent.model, folder / "model.onnx", tokenizer=parent.tokenizer,
                       quantize="int8", source=str(parent.source))
    files = {"onnx": exp.model, "onnx-int8": exp.quantized}
    quality = {}
    if kind == "gpt":
        from lmforge.compress.onnx_decode import OnnxCausalLM

        for name, path in files.items():
            quality[name] = parent.quality(OnnxCausalLM.load(path))
        return files, quality
    import numpy as np
    import torch

    from lmforge.tasks.evaluation import collate, metrics_for
    from lmforge.tasks.predictor import TaskPredictor

    pred = TaskPredictor(parent.model, parent.tokenizer)
    test = parent.splits()["test"]
    examples = pred._encode(test)
    gold = [r["label"] for r in test]
    eager, ort = [], {name: [] for name in files}
    sessions = {name: ort_forward(onnx_session(path)) for name, path in files.items()}
    for lo in range(0, len(examples), 64):
        batch = collate(examples[lo:lo + 64], parent.tokenizer.pad_id, "classify")
        with torch.no_grad():
            eager += parent.model(batch).argmax(-1).tolist()
        for name, forward in sessions.items():
            ort[name] += np.asarray(forward(batch)).argmax(-1).tolist()
    labels = parent.model.config.labels
    for name, ids in ort.items():
        m = metrics_for("classify", gold, [labels[i] for i in ids])
        quality[name] = {**m, "n": len(gold), "agree_eager": float(
            np.mean(np.asarray(ids) == np.asarray(eager)))}
    return files, quality


def table(kind: str, parent_report: dict, reports: dict[str, dict],
          speeds: dict[str, dict]) -> list[dict]:
    """Print the table of one parent; return its rows as dicts."""
    key, _ = QUALITY[kind]
    unit = "tok/s" if kind == "gpt" else "rev/s"  # forward throughput at batch 8
    rows = [{"row": "fp32", "parameters": parent_report["parameters"],
             "mb": parent_report["bytes"] / 1e6, **speeds["fp32"],
             "quality": parent_report["quality"]}]
    for name, rep in reports.items():
        c = rep["compressed"]
        extra = ""
        if "sparse_file_bytes" in rep:
            extra = f"sparse file {rep['sparse_file_bytes'] / 1e6:.2f} MB"
        rows.append({"row": name, "parameters": c["parameters"], "mb": c["bytes"] / 1e6,
                     **speeds[name], "quality": c["quality"], "note": extra})
    second = "grammatical" if kind == "gpt" else "f1_macro"
    print(f"\n{kind}: {key} (lower is better)" if kind == "gpt" else
          f"\n{kind}: {key} (ceiling {parent_report['quality'].get('ceiling')})")
    gen = kind == "gpt"
    print(f"{'row':<20}{'params':>11}{'MB':>8}{'b1 ms':>9}{'b8 ms':>9}{unit:>10}"
          + (f"{'gen b1':>9}{'gen b8':>9}" if gen else "")
          + f"{'peak MB':>9}{key[:10]:>11}{second[:11]:>12}  note")
    for r in rows:
        q = r["quality"]
        print(f"{r['row']:<20}{r['parameters']:>11,}{r['mb']:>8.2f}{r['lat_b1_ms']:>9.2f}"
              f"{r['lat_b8_ms']:>9.2f}{r['throughput']:>10.1f}"
              + (f"{r['gen_b1_tok_s']:>9.0f}{r['gen_b8_tok_s']:>9.0f}" if gen else "")
              + f"{r['peak_mb']:>9.0f}{q[key]:>11.4f}{q.get(second, float('nan')):>12.4f}"
              f"  {r.get('note', '')}")
    return rows


def plot(kind: str, rows: list[dict], path: Path) -> None:
    """Size on disk against quality, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, higher = QUALITY[kind]
    pts = sorted((r["mb"], r["quality"][key], r["row"]) for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    for mb, q, name in pts:
        ax.annotate(name, (mb, q), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front, best = [], None
    for mb, q, _ in pts:
        if best is None or (q > best if higher else q < best):
            front.append((mb, q))
            best = q
    ax.plot([p[0] for p in front], [p[1] for p in front], "r--", lw=1, label="Pareto front")
    ax.set_xlabel("size on disk (MB)")
    ax.set_ylabel(key + (" (higher is better)" if higher else " (lower is better)"))
    ax.set_title(f"lmforge compress: {kind}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def targets(kind: str, rows: list[dict]) -> None:
    """The issue's targets as JSON lines."""
    by = {r["row"]: r for r in rows}
    base = by["fp32"]
    key, higher = QUALITY[kind]

    def rel(r):  # relative quality loss (> 0: worse)
        a, b = r["quality"][key], base["quality"][key]
        return (b - a) / b if higher else (a - b) / b

    for name, r in by.items():
        if name == "fp32":
            continue
        emit({"bench": "compress", "model": kind, "metric": f"{name}_size_ratio",
              "lmforge": round(base["mb"] / r["mb"], 3), "peer": None,
              "peer_name": "fp32", "ratio": None, "target": None, "met": None,
              "quality": r["quality"][key], "quality_fp32": base["quality"][key],
              "lat_b1_ms": round(r["lat_b1_ms"], 3), "lat_b8_ms": round(r["lat_b8_ms"], 3),
              "peak_mb": round(r["peak_mb"], 1),
              **{k: round(r[k], 1) for k in ("gen_b1_tok_s", "gen_b8_tok_s") if k in r}})
    if kind == "gpt":
        for name in ("int4-g64", "int4-g32"):
            r = by[name]
            ratio = base["mb"] / r["mb"]
            emit({"bench": "compress", "model": kind, "metric": f"{name}_smaller",
                  "lmforge": round(ratio, 3), "target": 5.0, "met": ratio >= 5.0,
                  "bits_change": round(rel(r), 4), "bits_target": 0.03,
                  "bits_met": rel(r) <= 0.03})
        d, a = by["distill-half"], by["half-alone"]
        true = base["quality"]["true_bits"]
        emit({"bench": "compress", "model": kind, "metric": "distilled_bits_gap",
              "lmforge": round(d["quality"][key] - true, 3),
              "peer": round(a["quality"][key] - true, 3), "peer_name": "student alone",
              "met": d["quality"][key] < a["quality"][key]})
    if kind == "classifier":
        r = by["onnx"]
        speed = base["lat_b1_ms"] / r["lat_b1_ms"]
        same = r["quality"]["agree_eager"]
        emit({"bench": "compress", "model": kind, "metric": "onnx_speedup_b1",
              "lmforge": round(speed, 3), "peer": None, "peer_name": "eager fp32",
              "target": 1.3, "met": speed >= 1.3, "same_predictions": same,
              "same_met": same == 1.0})
    r = by["structured-30%"]
    speed = base["lat_b8_ms"] / r["lat_b8_ms"]
    emit({"bench": "compress", "model": kind, "metric": "structured_30_speedup_b8",
          "lmforge": round(speed, 3), "target": 1.25, "met": speed >= 1.25,
          "quality_change": round(rel(r), 4), "quality_target": 0.02,
          "quality_met": rel(r) <= 0.02})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt", default=str(ROOT / "runs/quickstart"))
    ap.add_argument("--classifier", default=str(ROOT / "runs/classify-sentiment"))
    ap.add_argument("--work", default=str(ROOT / "runs/bench-compress"))
    ap.add_argument("--only", choices=("gpt", "classifier"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        args.reps = args.reps or 5
        measure_child(args)
        return
    reps = args.reps or (3 if args.quick else 7)
    print(machine_line())
    from lmforge.compression.command import count_parameters, size_on_disk
    from lmforge.compression.parent import load_parent

    work = Path(args.work)
    for kind, path, rows in (("gpt", args.gpt, GPT_ROWS),
                             ("classifier", args.classifier, CLASSIFIER_ROWS)):
        if args.only and args.only != kind:
            continue
        if not Path(path).exists():
            print(f"{kind}: {path} does not exist; train it first "
                  f"({'make quickstart' if kind == 'gpt' else 'lmforge finetune classify-sentiment'})")
            continue
        reports = compress_rows(Path(path), kind, rows, work, args.quick, args.reuse)
        parent = load_parent(path)
        parent_report = {"parameters": count_parameters(parent.model),
                         "bytes": size_on_disk(parent.folder),
                         "quality": next(iter(reports.values()))["parent"]["quality"]}
        print(f"[{kind}] exporting to ONNX", flush=True)
        files, onnx_quality = onnx_rows(kind, parent, work)
        import torch

        from lmforge.tasks.predictor import TaskPredictor

        inputs = work / kind / "inputs.pt"
        torch.save(gpt_inputs(parent.tokenizer, parent.model.config.max_seq_len)
                   if kind == "gpt" else
                   classifier_inputs(TaskPredictor(parent.model, parent.tokenizer)), inputs)
        base = measure(Path("."), "baseline", 1, inputs)["peak_mb"]
        print(f"[{kind}] peak memory of a child that only imports torch and lmforge and "
              f"loads the inputs: {base:.0f} MB", flush=True)
        speeds = {"fp32": measure(parent.folder, kind, reps, inputs)}
        for name in reports:
            speeds[name] = measure(work / kind / name, kind, reps, inputs)
        for name, path in files.items():
            speeds[name] = measure(path, f"{kind}-onnx", reps, inputs)
            reports[name] = {"compressed": {"parameters": parent_report["parameters"],
                                            "bytes": path.stat().st_size,
                                            "quality": onnx_quality[name]}}
        out_rows = table(kind, parent_report, reports, speeds)
        plot(kind, out_rows, ROOT / "docs" / "img" / f"compress_{kind}.png")
        targets(kind, out_rows)


if __name__ == "__main__":
    main()
