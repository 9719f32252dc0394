"""``lmforge serve --workers N``: several processes behind one port; /metrics reports the
whole server (prometheus-client's multiprocess mode), whichever worker answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from serve_fixtures import free_port, make_model_folder


def _prompt_tokens(text: str) -> float:
    m = re.search(r'^lmforge:prompt_tokens_total\{model_name="tiny",model_version="1"\} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_add_up_over_workers(tmp_path):
    folder = make_model_folder(tmp_path / "tiny")
    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", f"tiny={folder}",
                             "--port", str(port), "--workers", "2", "--log-level", "warning"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 120, 0
        while ready < 6:  # several answers in a row: both workers have loaded
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            try:
                ready = ready + 1 if httpx.get(url + "/ready", timeout=5).status_code == 200 \
                    else 0
            except httpx.TransportError:
                ready = 0
            time.sleep(0.1)
        assert list(tmp.glob("lmforge-metrics-*")), "the workers share no metrics folder"
        total = 0
        for i in range(8):  # a new connection each: either worker may answer
            r = httpx.post(url + "/v1/completions", json={
                "model": "tiny", "prompt": "Alice " * (i + 1), "max_tokens": 2}, timeout=60)
            assert r.status_code == 200, r.text
            total += r.json()["usage"]["prompt_tokens"]
        scrapes = {_prompt_tokens(httpx.get(url + "/metrics", timeout=10).text)
                   for _ in range(6)}
        assert scrapes == {float(total)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("lmforge serve --workers did not stop on SIGTERM")
    assert not list(tmp.glob("lmforge-metrics-*"))  # removed when the server stops
