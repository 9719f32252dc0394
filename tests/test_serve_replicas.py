"""Two ``lmforge serve`` replicas behind a real nginx running the shipped
``deploy/nginx/lmforge.conf`` (its ports and paths swapped for the test's), under load
from concurrent clients, one replica killed (SIGKILL) part-way.

What the config promises and this checks: both replicas take traffic; a request that
finds the dead replica (refused connection, or dropped before any answer) is retried on
the other one, so no request fails before the kill nor after it; the only failures are
requests that the killed replica was answering at that moment and whose answer nginx had
started passing on, which it cannot retry: streams, and (rarely) a non-streamed answer
whose headers were written but not yet its body (uvicorn writes them apart); the dead
replica stops being tried after ``max_fails`` failures; the replicas answer alike
(temperature 0, same model); ``X-Request-Id`` goes through both ways; a stream reaches
the client while it is being generated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serve_fixtures import free_port, make_model_folder

pytestmark = [pytest.mark.slow, pytest.mark.alone]

CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "lmforge.conf"
PROMPTS = ["Alice lives in", "今天天气", "Bob asked: where", "The match"]
CLIENTS = 4
MAX_TOKENS = 20
# Load before the kill, then after it: the second stays under the config's fail_timeout,
# so the dead replica, once marked down, is not tried again within the test.
BEFORE_S, AFTER_S = 4.0, 5.0


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def front_config(tmp: Path, front: int, replicas: list[int]) -> Path:
    """The shipped config with the test's ports and log path, inside a minimal main
    config whose temporary files stay in ``tmp``. Each replaced piece must occur exactly
    once, so that a change to the shipped file cannot leave the test on stale values."""
    text = CONF.read_text()
    for old, new in {"listen 80;": f"listen 127.0.0.1:{front};",
                     "server 127.0.0.1:8001 ": f"server 127.0.0.1:{replicas[0]} ",
                     "server 127.0.0.1:8002 ": f"server 127.0.0.1:{replicas[1]} ",
                     "/var/log/nginx/lmforge.access.log": str(tmp / "access.log")}.items():
        assert text.count(old) == 1, f"{CONF} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # nginx started by root runs its workers as `nobody`, who cannot enter pytest's
    # private tmp folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(f"{user}worker_processes 1;\nevents {{ worker_connections 256; }}\n"
                    f"http {{\n{temp}\n{text}\n}}\n")
    return conf


def upstream_limits() -> tuple[int, float]:
    """The shipped config's max_fails and fail_timeout (seconds) for the replicas."""
    m = re.search(r"max_fails=(\d+) fail_timeout=(\d+)s", CONF.read_text())
    return int(m.group(1)), float(m.group(2))


def start_replica(model: Path, port: int, tmp: Path) -> subprocess.Popen:
    # One thread each: two replicas, nginx and the clients share the machine. The
    # database is the test's own (absent: an open server), never ~/.lmforge/serve.db.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp / f"replica-{port}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", "serve", f"m={model}", "--port", str(port),
             "--log-level", "warning", "--db", str(tmp / "serve.db")],
            stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, procs: list[subprocess.Popen], tmp: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')}"
                             for f in sorted(tmp.glob("*.log")))
            raise AssertionError(f"{url}/ready never answered 200\n{logs}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM and wait (nginx's master then stops its workers); SIGKILL if stuck."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sse_texts(response: httpx.Response):
    """(arrival time, text) of each event of a completion stream; raises unless the
    stream ends with ``[DONE]``: a stream cut by a dying replica is a failure."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise RuntimeError(f"error event: {event['error']}")
        yield time.monotonic(), event["choices"][0]["text"]
    raise RuntimeError("the stream ended without [DONE]")


@dataclass
class Call:
    """One client request through the front: when it ran, what came back."""

    rid: str
    prompt: str
    stream: bool
    start: float
    end: float = 0.0
    text: str | None = None  # None: it failed
    echoed_rid: str | None = None
    error: str = ""


def complete(http: httpx.Client, call: Call) -> None:
    body = {"model": "m", "prompt": call.prompt, "max_tokens": MAX_TOKENS,
            "temperature": 0, "stream": call.stream}
    with http.stream("POST", "/v1/completions", json=body,
                     headers={"X-Request-Id": call.rid}) as r:
        r.raise_for_status()
        call.echoed_rid = r.headers.get("x-request-id")
        if call.stream:
            call.text = "".join(text for _, text in sse_texts(r))
        else:
            r.read()
            call.text = r.json()["choices"][0]["text"]


def client_loop(k: int, url: str, stop_event: threading.Event, calls: list[Call]) -> None:
    """Client ``k``: requests back to back until told to stop, streamed and not in
    turn, each prompt both ways."""
    with httpx.Client(base_url=url, timeout=30) as http:
        n = 0
        while not stop_event.is_set():
            call = Call(rid=f"c{k}-{n}", prompt=PROMPTS[(n // 2 + k) % len(PROMPTS)],
                        stream=(n + k) % 2 == 0, start=time.monotonic())
            try:
                complete(http, call)
            except Exception as e:  # any failure counts: refused, cut, HTTP error, bad body
                call.text, call.error = None, f"{type(e).__name__}: {e}"
            call.end = time.monotonic()
            calls.append(call)
            n += 1


def read_access_log(path: Path) -> dict[str, list[str]]:
    """Request id -> the replicas nginx tried for it, in order (the shipped log format)."""
    tried = {}
    for line in path.read_text().splitlines():
        m = re.search(r"rid=(\S+) upstream=\[([^\]]*)\]", line)
        tried[m.group(1)] = m.group(2).split(", ")
    return tried


def test_killed_replica_fails_only_the_answers_it_had_started(tmp_path):
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed (.ci/run installs it with apt-get when root)")
    model = make_model_folder(tmp_path / "tiny", max_seq_len=512)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    front, *replica_ports = sorted(ports)
    url = f"http://127.0.0.1:{front}"
    procs: list[subprocess.Popen] = []
    try:
        replicas = [start_replica(model, p, tmp_path) for p in replica_ports]
        procs += replicas
        for p in replica_ports:
            wait_ready(f"http://127.0.0.1:{p}", procs, tmp_path)
            # A replica's first generation pays one-time costs: paid here, directly, so
            # that the stream timed below measures the way through the front.
            httpx.post(f"http://127.0.0.1:{p}/v1/completions", timeout=30,
                       json={"model": "m", "prompt": PROMPTS[0], "max_tokens": MAX_TOKENS}
                       ).raise_for_status()
        # Started once the replicas are ready: polled earlier, they would count as failed.
        conf = front_config(tmp_path, front, replica_ports)
        front_proc = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(conf), "-g",
             f"daemon off; pid {tmp_path / 'nginx.pid'}; "
             f"error_log {tmp_path / 'nginx-error.log'} warn;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(front_proc)
        wait_ready(url, procs, tmp_path, timeout=30)

        # Without a client id, the replica gets (and echoes) nginx's $request_id: checked
        # below against nginx's log, as the replica would otherwise make up its own.
        r = httpx.get(url + "/health", timeout=10)
        assert r.status_code == 200
        nginx_rid = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", nginx_rid), nginx_rid

        # A long stream reaches the client while the replica is still generating it:
        # the first event comes long before the last, not in one block at the end.
        t0 = time.monotonic()
        with httpx.stream("POST", url + "/v1/completions", timeout=30,
                          json={"model": "m", "prompt": "Alice lives in", "max_tokens": 400,
                                "temperature": 0, "stream": True}) as r:
            arrivals = [t for t, _ in sse_texts(r)]
        first, last = arrivals[0] - t0, arrivals[-1] - t0
        assert len(arrivals) >= 100, len(arrivals)
        assert first < 0.5 * last, (first, last)

        calls: list[Call] = []
        stop_load = threading.Event()
        clients = [threading.Thread(target=client_loop, args=(k, url, stop_load, calls))
                   for k in range(CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(BEFORE_S)
        t_kill = time.monotonic()
        replicas[0].send_signal(signal.SIGKILL)
        time.sleep(AFTER_S)
        stop_load.set()
        for c in clients:
            c.join(60)
        assert not any(c.is_alive() for c in clients)
        stop(front_proc)  # its access log is complete once it has stopped
        tried = read_access_log(tmp_path / "access.log")
    finally:
        for p in procs:
            stop(p)

    dead, alive = (f"127.0.0.1:{p}" for p in replica_ports)
    phases = {"before": [c for c in calls if c.end < t_kill],
              "in flight": [c for c in calls if c.start < t_kill <= c.end],
              "after": [c for c in calls if c.start >= t_kill]}
    after_on_dead = sum(dead in tried[c.rid] for c in phases["after"])
    max_fails, fail_timeout = upstream_limits()
    print(f"\nreplica failover through nginx: {CLIENTS} clients, {MAX_TOKENS} tokens each, "
          f"{dead} killed after {BEFORE_S:.0f} s, {AFTER_S:.0f} s more load")
    print(f"  {'phase':<10} {'requests':>8} {'streamed':>8} {'failed':>6} "
          f"{'retried':>7} {'on killed replica':>17}")
    for name, group in phases.items():
        print(f"  {name:<10} {len(group):>8} {sum(c.stream for c in group):>8} "
              f"{sum(c.text is None for c in group):>6} "
              f"{sum(len(tried[c.rid]) > 1 for c in group):>7} "
              f"{sum(dead in tried[c.rid] for c in group):>17}")
    for c in calls:
        if c.text is None:
            print(f"  failed: {c.rid} stream={c.stream} tried={tried[c.rid]} {c.error}")
    print(f"  SSE through nginx: {len(arrivals)} events, first after {first:.3f} s, "
          f"last after {last:.3f} s")
    print(f"  requests tried on the dead replica after the kill: {after_on_dead} "
          f"(max_fails={max_fails}, fail_timeout={fail_timeout:.0f}s)")

    assert nginx_rid in tried
    assert len(phases["before"]) >= 2 * CLIENTS and len(phases["after"]) >= 2 * CLIENTS
    # least_conn spread the load: both replicas answered before the kill.
    assert {tried[c.rid][-1] for c in phases["before"]} == {dead, alive}
    assert not [c.error for c in phases["before"] + phases["after"] if c.text is None]
    for c in calls:
        if c.text is None:  # an answer the killed replica had started when it died
            assert c.start < t_kill <= c.end and tried[c.rid] == [dead], c
        else:
            assert c.echoed_rid == c.rid
    # Every successful answer, from either replica, retried or not, streamed or not, is
    # the same greedy continuation of its prompt.
    for prompt in PROMPTS:
        assert len({c.text for c in calls if c.prompt == prompt and c.text is not None}) == 1
    # Passive health check: after max_fails failures the dead replica is out of rotation
    # for fail_timeout, longer than the test goes on.
    assert AFTER_S < fail_timeout
    assert after_on_dead <= max_fails
