"""Serving throughput and latency, measured like vLLM's ``benchmark_serving``.

Three servers answer the same streaming ``/v1/completions`` requests on loopback, one
after the other, each in its own process using every core:

- ``lmforge``: ``lmforge serve`` with continuous batching (``--max-running 16``);
- ``lmforge-b1``: the same server with batching off (``--max-running 1``: one sequence
  at a time, the others queue);
- ``transformers``: ``GPT2LMHeadModel.generate()`` behind a FastAPI app of the same
  route, one request at a time (a lock), streaming every token through a
  ``BaseStreamer`` and lmforge's incremental detokenizer, so that chunks are per token
  as in lmforge's server;
- and, offline (no HTTP), ``transformers``' own continuous batching
  (``generate_batch``, paged attention) on all the prompts at once.

The model is GPT-2-small-shaped (12 layers, 12 heads, d 768, context 1024) with random
weights made by ``transformers`` (seed 0), and a 50,257-token byte-level BPE trained on
the Python standard library (so every id decodes to text; ~1 minute, cached in
``--work``). Prompts are windows of standard-library text of ``--input`` tokens; every
request asks for exactly ``--output`` tokens (``ignore_eos``, or ``min_new_tokens`` for
transformers), temperature 0.

The client follows vLLM's method: arrivals are a Poisson process at ``--rates`` requests
per second (``inf`` = all at once) under a ``--concurrency`` semaphore, after one warm-up
request. TTFT is the first streamed chunk minus the send time, ITL the gaps between
chunks, TPOT = (E2E - TTFT) / (output tokens - 1); each is reported as mean, median and
p99, with requests/s and output tokens/s over the run.

Targets (the serving issue), at 16 concurrent clients: lmforge's output tokens/s >= 4x
``lmforge-b1``'s and >= 3x ``transformers``'.

Usage: ``python bench/serve.py [--quick]``; ``--serve-hf DIR --port P`` runs the
transformers server (used by the script itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import emit, machine_line
from fastapi import Request  # at module level: the peer app's route annotation names it

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 50257


# ----------------------------------------------------------------------------- setup

def prepare(work: Path) -> Path:
    """The model folder (random GPT-2-small weights + a stdlib BPE), made once."""
    folder = work / "gpt2-small-random"
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.corpora.stdlib import iter_stdlib_documents
    from lmforge.tokenize.train import train_tokenizer

    print("training a 50,257-token BPE on the standard library (once) ...", flush=True)
    tok = train_tokenizer("bpe", texts=(text for _, text in iter_stdlib_documents()),
                          vocab_size=VOCAB, show_progress=False)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size)).eval()
    model.save_pretrained(folder)
    tok.save(folder)
    return folder


def make_prompts(folder: Path, n: int, length: int, seed: int) -> list[list[int]]:
    """``n`` windows of ``length`` tokens of standard-library text (token ids)."""
    from lmforge.corpora.stdlib import iter_stdlib_documents
    from lmforge.hub import load_tokenizer

    tok = load_tokenizer(folder)
    ids: list[int] = []
    for _, doc in iter_stdlib_documents():
        ids.extend(tok.encode(doc))
        if len(ids) > 200 * length:
            break
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - length) for _ in range(n)]
    return [ids[s:s + length] for s in starts]


# ----------------------------------------------------------------------------- the peer

def hf_app(folder: str):
    """transformers ``generate()`` behind one FastAPI route, one request at a time."""
    import threading

    import torch
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from transformers import GPT2LMHeadModel
    from transformers.generation.streamers import BaseStreamer

    from lmforge.generate.text import IncrementalDetokenizer
    from lmforge.hub import load_tokenizer

    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    tok = load_tokenizer(folder)
    app = FastAPI()
    lock = asyncio.Lock()

    class Streamer(BaseStreamer):
        def __init__(self, loop, queue, prompt):
            self.loop, self.queue, self.first = loop, queue, True
            self.detok = IncrementalDetokenizer(tok, prompt[-4:])

        def put(self, value):
            if self.first:  # generate() sends the prompt first
                self.first = False
                return
            for t in value.reshape(-1).tolist():
                self.loop.call_soon_threadsafe(self.queue.put_nowait,
                                               (self.detok.push(t), 1))

        def end(self):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (self.detok.flush(), None))

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        prompt, n = body["prompt"], body["max_tokens"]

        async def chunks():
            async with lock:
                loop, queue = asyncio.get_running_loop(), asyncio.Queue()
                streamer = Streamer(loop, queue, prompt)

                def run():
                    with torch.inference_mode():
                        model.generate(torch.tensor([prompt]), max_new_tokens=n,
                                       min_new_tokens=n, do_sample=False, streamer=streamer,
                                       pad_token_id=0)

                thread = threading.Thread(target=run)
                thread.start()
                count = 0
                while True:
                    text, more = await queue.get()
                    if more is None:
                        break
                    count += 1
                    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                thread.join()
                usage = {"prompt_tokens": len(prompt), "completion_tokens": count,
                         "total_tokens": len(prompt) + count}
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def hf_continuous_batching(folder: Path, prompts: list[list[int]], n_out: int) -> dict:
    """transformers' own continuous batching, ``generate_batch`` (paged attention), run
    offline in a child process: no HTTP and no streaming, so an upper bound for a server
    built on it. Returns output tokens/s and wall time."""
    code = f"""
import json, sys, time, torch
from transformers import GPT2LMHeadModel, GenerationConfig
m = GPT2LMHeadModel.from_pretrained({str(folder)!r}).eval()
prompts = json.loads(sys.stdin.read())
gc = GenerationConfig(max_new_tokens={n_out}, min_new_tokens={n_out}, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
t = time.perf_counter()
with torch.inference_mode():
    out = m.generate_batch(prompts, gc, warmup=False)
dt = time.perf_counter() - t
print(json.dumps({{"tokens": sum(len(v.generated_tokens) for v in out.values()),
                   "seconds": dt}}))
"""
    r = subprocess.run([sys.executable, "-c", code], input=json.dumps(prompts),
                       capture_output=True, text=True, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    cb = {"out_tok_per_s": res["tokens"] / res["seconds"], "duration_s": res["seconds"],
          "tokens": res["tokens"]}
    print(f"transformers generate_batch (offline, all {len(prompts)} prompts at once, no "
          f"HTTP): {cb['out_tok_per_s']:.1f} tok/s ({cb['duration_s']:.0f} s)", flush=True)
    return cb


# ----------------------------------------------------------------------------- client

async def one_request(client, url: str, prompt: list[int], n_out: int) -> dict:
    body = {"model": "m", "prompt": prompt, "max_tokens": n_out, "temperature": 0,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    times, tokens = [], None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": chunk["error"]["message"]}
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                times.append(time.perf_counter())
    end = time.perf_counter()
    if not times or tokens is None:
        return {"error": "no tokens"}
    ttft = times[0] - sent
    return {"ttft": ttft, "e2e": end - sent, "tokens": tokens,
            "itl": [b - a for a, b in zip(times, times[1:], strict=False)],
            "tpot": (end - sent - ttft) / max(1, tokens - 1)}


async def load(url: str, prompts: list[list[int]], n_out: int, rate: float,
               concurrency: int, seed: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(3600), limits=limits) as client:
        warm = await one_request(client, url, prompts[0], min(8, n_out))
        if "error" in warm:
            raise RuntimeError(f"warm-up failed: {warm['error']}")
        sem = asyncio.Semaphore(concurrency)
        rng = random.Random(seed)

        async def limited(p):
            async with sem:
                return await one_request(client, url, p, n_out)

        start = time.perf_counter()
        tasks = []
        for p in prompts:
            tasks.append(asyncio.create_task(limited(p)))
            if rate != float("inf"):
                await asyncio.sleep(rng.expovariate(rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    return {"results": ok, "errors": len(results) - len(ok), "duration": duration}


def summarise(run: dict) -> dict:
    res = run["results"]

    def stats(values):
        values = sorted(values)
        if not values:
            return {"mean": None, "p50": None, "p99": None}
        p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
        return {"mean": statistics.fmean(values), "p50": statistics.median(values),
                "p99": p99}

    out_tokens = sum(r["tokens"] for r in res)
    return {"requests": len(res), "errors": run["errors"], "duration_s": run["duration"],
            "req_per_s": len(res) / run["duration"], "out_tok_per_s": out_tokens / run["duration"],
            "ttft": stats([r["ttft"] for r in res]), "tpot": stats([r["tpot"] for r in res]),
            "itl": stats([x for r in res for x in r["itl"]]),
            "e2e": stats([r["e2e"] for r in res])}


# ----------------------------------------------------------------------------- servers

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a loopback port, ready when ``/ready`` (or ``/docs``) is 200."""

    def __init__(self, argv: list[str], ready_path: str = "/ready"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([*argv, "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.ready_path = ready_path

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def lmforge_server(folder: Path, max_running: int) -> Server:
    return Server([sys.executable, "-m", "lmforge.cli", "serve", f"m={folder}",
                   "--max-running", str(max_running), "--log-level", "warning",
                   "--prefix-cache-tokens", "0"])


def hf_server(folder: Path) -> Server:
    return Server([sys.executable, __file__, "--serve-hf", str(folder)], "/docs")


# ----------------------------------------------------------------------------- main

def row(name: str, mode: str, s: dict) -> str:
    ms = lambda x: f"{1000 * x:8.1f}" if x is not None else "       -"  # noqa: E731
    return (f"{name:<13}{mode:<12}{s['requests']:>5}{s['errors']:>4}{s['out_tok_per_s']:>9.1f}"
            f"{s['req_per_s']:>7.2f}{ms(s['ttft']['p50'])}{ms(s['ttft']['p99'])}"
            f"{ms(s['tpot']['p50'])}{ms(s['itl']['p50'])}{ms(s['itl']['p99'])}"
            f"{ms(s['e2e']['p50'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter requests")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmforge-bench-serve"))
    ap.add_argument("--input", type=int, default=None, help="prompt tokens")
    ap.add_argument("--output", type=int, default=None, help="generated tokens")
    ap.add_argument("--requests", type=int, default=None, help="requests per run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rates", default="inf", help="comma-separated request rates for "
                                                  "lmforge's Poisson runs (inf = at once)")
    ap.add_argument("--skip-generate-batch", action="store_true",
                    help="do not run transformers' generate_batch (slow on CPU)")
    ap.add_argument("--only-generate-batch", action="store_true",
                    help="run only transformers' generate_batch (no servers)")
    ap.add_argument("--serve-hf", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hf:
        import uvicorn

        uvicorn.run(hf_app(args.serve_hf), host="127.0.0.1", port=args.port,
                    log_level="warning")
        return
    n_in = args.input or (32 if args.quick else 128)
    n_out = args.output or (32 if args.quick else 128)
    n_req = args.requests or (32 if args.quick else 64)
    folder = prepare(args.work)
    prompts = make_prompts(folder, n_req, n_in, seed=0)
    c = args.concurrency
    if args.only_generate_batch:
        cb = hf_continuous_batching(folder, prompts, n_out)
        emit({"bench": "serve", "metric": "out_tok_per_s_offline",
              "server": "transformers generate_batch", "value": round(cb["out_tok_per_s"], 3),
              "input": n_in, "output": n_out, "requests": n_req})
        return
    runs: dict[tuple[str, str], dict] = {}

    def measure(name: str, server: Server, modes: list[tuple[str, float, int]]) -> None:
        with server:
            for mode, rate, conc in modes:
                run = asyncio.run(load(server.url, prompts, n_out, rate, conc, seed=1))
                runs[(name, mode)] = summarise(run)
                print(row(name, mode, runs[(name, mode)]), flush=True)

    print(machine_line())
    print(f"GPT-2-small-shaped model, random weights; {n_req} requests of {n_in} prompt "
          f"tokens -> {n_out} output tokens, greedy, streamed")
    print(f"{'server':<13}{'mode':<12}{'reqs':>5}{'err':>4}{'tok/s':>9}{'req/s':>7}"
          f"{'TTFT50':>8}{'TTFT99':>8}{'TPOT50':>8}{'ITL50':>8}{'ITL99':>8}{'E2E50':>8}"
          "   (ms)")
    rates = [float(r) for r in args.rates.split(",")]
    lmf_modes = [("c=1", float("inf"), 1), (f"c={c}", float("inf"), c)]
    lmf_modes += [(f"rate={r:g}", r, c) for r in rates if r != float("inf")]
    measure("lmforge", lmforge_server(folder, c), lmf_modes)
    measure("lmforge-b1", lmforge_server(folder, 1), [(f"c={c}", float("inf"), c)])
    measure("transformers", hf_server(folder), [(f"c={c}", float("inf"), c)])
    cb = None
    if not args.skip_generate_batch:
        cb = hf_continuous_batching(folder, prompts, n_out)

    key = f"c={c}"
    lmf = runs[("lmforge", key)]["out_tok_per_s"]
    for peer, target in (("lmforge-b1", 4.0), ("transformers", 3.0)):
        p = runs[(peer, key)]["out_tok_per_s"]
        print(f"output tok/s at {c} clients: lmforge {lmf:.1f} vs {peer} {p:.1f}: "
              f"{lmf / p:.2f}x (target {target:g}x)")
    for (name, mode), s in runs.items():
        for metric in ("out_tok_per_s", "req_per_s"):
            emit({"bench": "serve", "metric": f"{metric}_{mode}", "server": name,
                  "value": round(s[metric], 3), "input": n_in, "output": n_out,
                  "requests": s["requests"], "errors": s["errors"]})
        for lat in ("ttft", "tpot", "itl", "e2e"):
            for stat in ("mean", "p50", "p99"):
                v = s[lat][stat]
                emit({"bench": "serve", "metric": f"{lat}_{stat}_s_{mode}", "server": name,
                      "value": None if v is None else round(v, 5)})
    if cb is not None:
        emit({"bench": "serve", "metric": "out_tok_per_s_offline", "lmforge": round(lmf, 2),
              "peer": round(cb["out_tok_per_s"], 2),
              "peer_name": "transformers generate_batch (offline)",
              "ratio": round(lmf / cb["out_tok_per_s"], 3), "target": None, "met": None})
    for peer, target in (("lmforge-b1", 4.0), ("transformers", 3.0)):
        p = runs[(peer, key)]["out_tok_per_s"]
        emit({"bench": "serve", "metric": f"out_tok_per_s_{key}", "lmforge": round(lmf, 2),
              "peer": round(p, 2), "peer_name": peer, "ratio": round(lmf / p, 3),
              "target": target, "met": lmf / p >= target})


if __name__ == "__main__":
    main()
