"""Load on a real server process (slow): 64 concurrent streaming clients for 60 s with no
error (TTFT and inter-token latency reported), then 10,000 requests with no memory growth
beyond the caches' bounds."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_fixtures import free_port, make_model_folder

pytestmark = [pytest.mark.slow, pytest.mark.alone]

PROMPTS = ["Alice lives in", "今天天气", "Bob asked: where", "The match", "小明住在北京",
           "The weather is", "我们去公园", "She works for"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("load") / "tiny")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", "serve", f"tiny={folder}", "--port", str(port),
         "--max-running", "16", "--max-waiting", "256", "--prefix-cache-tokens", "2048",
         "--response-cache", "128", "--log-level", "warning"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "slow"
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


async def _stream(client, i: int, stats: dict) -> None:
    body = {"model": "tiny", "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 16,
            "temperature": 0.8, "stream": True}
    sent = time.perf_counter()
    last = None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                stats["errors"].append(f"HTTP {r.status_code}")
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                if "error" in json.loads(line[6:]):
                    stats["errors"].append(line)
                now = time.perf_counter()
                if last is None:
                    stats["ttft"].append(now - sent)
                else:
                    stats["itl"].append(now - last)
                last = now
    except httpx.HTTPError as e:
        stats["errors"].append(repr(e))
    stats["done"] += 1


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def test_64_streaming_clients_for_60_seconds(server):
    url, _ = server
    stats = {"ttft": [], "itl": [], "errors": [], "done": 0}

    async def client_loop(i: int, client, stop: float):
        while time.perf_counter() < stop:
            await _stream(client, i, stats)

    async def main():
        limits = httpx.Limits(max_connections=80)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            stop = time.perf_counter() + 60
            await asyncio.gather(*(client_loop(i, client, stop) for i in range(64)))

    asyncio.run(main())
    print(f"\n64 clients x 60 s: {stats['done']} streams, {len(stats['errors'])} errors; "
          f"TTFT p50 {1000 * statistics.median(stats['ttft']):.0f} ms, "
          f"p99 {1000 * _pct(stats['ttft'], 0.99):.0f} ms; inter-token p50 "
          f"{1000 * statistics.median(stats['itl']):.1f} ms, p99 "
          f"{1000 * _pct(stats['itl'], 0.99):.1f} ms")
    assert stats["errors"] == []
    assert stats["done"] >= 64


def test_no_memory_growth_over_10000_requests(server):
    url, pid = server

    async def burst(n: int, offset: int):
        sem = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=url, timeout=120,
                                     limits=httpx.Limits(max_connections=40)) as client:
            async def one(i):
                async with sem:
                    body = {"model": "tiny", "prompt": f"{PROMPTS[i % 8]} {i + offset}",
                            "max_tokens": 2, "temperature": 0}
                    r = await client.post("/v1/completions", json=body)
                    return r.status_code
            return await asyncio.gather(*(one(i) for i in range(n)))

    warm = asyncio.run(burst(2000, 0))
    before = _rss_mb(pid)
    statuses = asyncio.run(burst(8000, 2000))
    after = _rss_mb(pid)
    print(f"\nRSS after 2,000 requests {before:.0f} MB, after 10,000 {after:.0f} MB")
    assert set(warm) | set(statuses) == {200}
    # every request was new (its number is in the prompt): the caches filled up to their
    # bounds during the warm-up and stayed there
    assert after - before < 40, (before, after)
    metrics = httpx.get(url + "/metrics").text
    assert 'lmforge:num_requests_running{model_name="tiny",model_version="1"} 0.0' in metrics
    assert 'lmforge:num_requests_waiting{model_name="tiny",model_version="1"} 0.0' in metrics
