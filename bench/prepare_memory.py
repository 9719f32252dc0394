"""Peak memory of ``prepare_data`` on corpora of different sizes: it must not grow with
the corpus (apart from the dedup table, ~11-23 bytes per unique document).

The corpora are synthetic mixed Chinese/English lines drawn from word lists with a seeded
generator (every line distinct, so dedup keeps them all). Each preparation runs in a fresh
subprocess that reports its own peak resident set size (``ru_maxrss``); the baseline is
the peak after ``import lmforge.data.prepare`` (Python, NumPy, PyTorch and tokenizers).

Two modes per size:

* ``train`` -- the full pipeline: pass 1 samples text and trains a byte-level BPE
  tokenizer, pass 2 cleans, dedups, splits and encodes;
* ``given`` -- a ready tokenizer (the one trained on the smallest corpus): pass 2 only.

Usage::

    python bench/prepare_memory.py                     # 50 MB and 300 MB
    python bench/prepare_memory.py --sizes 5,20 --workdir /tmp/pm

The table, headed by the machine (CPU, ISA, threads), is followed by one JSON object per
figure (``make bench | grep '^{'``), each with the machine tag (``cpu``, ``isa``,
``isa_caps``, ``threads``). No matmul precision is involved, so nothing is skipped on any
CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, machine_line

EN = ("the of and to in is was for on that with as by at from his her it an were are which "
      "this be or has had not but one they their new after first two also its who been more "
      "than time year city world people school state river music film game team language "
      "model data learning network system water light mountain village history science "
      "computer student teacher market energy power family friend story morning evening "
      "winter summer").split()
ZH = ("我们 你们 他们 今天 明天 昨天 学习 工作 生活 城市 国家 世界 语言 模型 数据 机器 学生 "
      "老师 学校 时间 问题 方法 系统 网络 计算 研究 发展 经济 文化 历史 科学 技术 音乐 电影 "
      "游戏 朋友 家庭 故事 早上 晚上 春天 夏天 秋天 冬天 山 水 河 海 天 地 人 心 手 看 听 说 "
      "读 写 走 跑 吃 喝 好 大 小 多 少 新 旧 的 了 是 在 有 和 也 都 很").split()


def generate(path: Path, nbytes: int, seed: int = 0) -> int:
    """Write about ``nbytes`` of distinct mixed zh/en lines; return the number of lines."""
    rng = np.random.default_rng(seed)
    en = np.array(EN, dtype=object)
    zh = np.array(ZH, dtype=object)
    written = lines_out = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < nbytes:
            k = 2_000
            lens = rng.integers(8, 40, size=k)
            is_zh = rng.random(k) < 0.5
            idx_en = rng.integers(0, len(en), size=int(lens.sum()))
            idx_zh = rng.integers(0, len(zh), size=int(lens.sum()))
            lines, p = [], 0
            for n, z in zip(lens.tolist(), is_zh.tolist(), strict=True):
                if z:
                    w = zh[idx_zh[p:p + n]]
                    lines.append("".join(w[: n // 2]) + "，" + "".join(w[n // 2:]) + "。")
                else:
                    lines.append(" ".join(en[idx_en[p:p + n]]).capitalize() + ".")
                p += n
            chunk = "\n".join(lines) + "\n"
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
            lines_out += k
    return lines_out


def child(corpus: str, out: str, tokenizer: str | None, vocab_size: int) -> None:
    """Run one preparation and print its figures as JSON (in the subprocess)."""
    from lmforge.data.prepare import prepare_data

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    base = rss_mb()
    t0 = time.perf_counter()
    meta = prepare_data([corpus], out, tokenizer=tokenizer,
                        tokenizer_spec={"kind": "bpe", "vocab_size": vocab_size},
                        show_progress=False)
    print(json.dumps({
        "baseline_mb": round(base, 1), "peak_mb": round(rss_mb(), 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "documents": meta["documents"]["kept"],
        "tokens": sum(s["tokens"] for s in meta["splits"].values()),
    }))


def run_child(corpus: Path, out: Path, tokenizer: Path | None, vocab_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(corpus), str(out),
           "--vocab-size", str(vocab_size)]
    if tokenizer is not None:
        cmd += ["--tokenizer", str(tokenizer)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"child failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50,300", help="corpus sizes in MB, comma-separated")
    ap.add_argument("--modes", default="train,given")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--workdir", help="where to write corpora and outputs (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.tokenizer, args.vocab_size)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="prepare-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    tokenizer_dir: Path | None = None
    try:
        for mb in sizes:
            corpus = work / f"corpus-{mb}mb.txt"
            if not corpus.is_file() or corpus.stat().st_size < mb * 10**6:
                t0 = time.perf_counter()
                n = generate(corpus, mb * 10**6)
                print(f"generated {corpus} ({n} lines, {time.perf_counter() - t0:.1f} s)",
                      file=sys.stderr)
            for mode in modes:
                out = work / f"out-{mb}mb-{mode}"
                tok = tokenizer_dir if mode == "given" else None
                if mode == "given" and tok is None:
                    # no train run yet: train once on the smallest corpus, outside the table
                    run_child(work / f"corpus-{sizes[0]}mb.txt", work / "tok", None,
                              args.vocab_size)
                    tok = tokenizer_dir = work / "tok"
                r = run_child(corpus, out, tok, args.vocab_size)
                if mode == "train" and tokenizer_dir is None:
                    tokenizer_dir = out
                r.update(mb=mb, mode=mode, input_mb=round(corpus.stat().st_size / 2**20, 1))
                rows.append(r)
                print(f"  {mb} MB {mode}: {r}", file=sys.stderr)
                if out != tokenizer_dir:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    head = (f"{'corpus':>8} {'MiB':>6} {'mode':>6} {'docs':>10} {'tokens':>12} {'time s':>7} "
            f"{'baseline MB':>11} {'peak MB':>8} {'peak-base':>9}")
    print(machine_line())
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['mb']:>6}MB {r['input_mb']:>6} {r['mode']:>6} {r['documents']:>10,} "
              f"{r['tokens']:>12,} "
              f"{r['seconds']:>7} {r['baseline_mb']:>11} {r['peak_mb']:>8} "
              f"{r['peak_mb'] - r['baseline_mb']:>9.1f}")
    for r in rows:
        emit({"bench": "prepare_memory", "metric": f"peak_rss_mb_{r['mb']}mb_{r['mode']}",
              "lmforge": r["peak_mb"], "peer": None, "peer_name": None,
              "ratio": None, "target": None, "met": None, "seconds": r["seconds"]})
    for mode in modes:
        by = {r["mb"]: r for r in rows if r["mode"] == mode}
        if len(by) >= 2:
            lo, hi = min(by), max(by)
            growth = round(by[hi]["peak_mb"] - by[lo]["peak_mb"], 1)
            # budget: the dedup table (<= 23 bytes per document, x1.35 while it grows) + 32 MB
            budget = round(by[hi]["documents"] * 23 * 1.35 / 2**20 + 32, 1)
            emit({"bench": "prepare_memory",
                  "metric": f"peak_rss_growth_mb_{lo}mb_to_{hi}mb_{mode}",
                  "lmforge": growth, "peer": None, "peer_name": None,
                  "ratio": None, "target": budget, "met": growth <= budget})


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    main()
