"""Prometheus metrics, named like vLLM's with an ``lmforge:`` prefix (``GET /metrics``).

Every series carries ``model_name`` and ``model_version``. Latencies are measured at the
HTTP layer, as a client sees them: *time to first token* from the request's arrival to
its first generated token, *inter-token latency* between consecutive tokens of one
sequence, *end-to-end latency* from arrival to the last token. The engine's state
(running and waiting sequences, prefix-cache counts) is read when Prometheus scrapes.
Each app has its own registry, so several servers can live in one process (tests). With
``--workers N`` the workers share their counters and histograms through
prometheus-client's multiprocess mode (a temporary folder the parent creates), so any
worker's ``/metrics`` reports the whole server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "lmforge:"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LABELS = ("model_name", "model_version")
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


class ServerMetrics:
    """The server's metrics; ``engines()`` lists ``(name, version, engine)`` to read at
    scrape time."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, str, object]]]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds",
                              "Time from a request's arrival to its first token.", LABELS,
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram(PREFIX + "inter_token_latency_seconds",
                             "Time between consecutive tokens of a sequence.", LABELS,
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram(PREFIX + "e2e_request_latency_seconds",
                             "Time from a request's arrival to its last token.", LABELS,
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens processed.",
                                     LABELS, registry=r)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Tokens generated.",
                                         LABELS, registry=r)
        self.success = Counter(PREFIX + "request_success",
                               "Sequences finished, by finish reason.",
                               (*LABELS, "finished_reason"), registry=r)
        self.response_cache_hits = Counter(PREFIX + "response_cache_hits",
                                           "Requests answered from the response cache.",
                                           LABELS, registry=r)
        self.engine_collector = _EngineCollector(engines)
        r.register(self.engine_collector)

    def scrape(self) -> bytes:
        """The exposition text. Under ``lmforge serve --workers N`` (``$PROMETHEUS_MULTIPROC_DIR``
        set, prometheus-client's multiprocess mode) the counters and histograms are summed
        over every worker; the engine's gauges are the answering worker's."""
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        registry.register(self.engine_collector)
        return generate_latest(registry)


class _EngineCollector:
    """Gauges and counters read from the engines at scrape time."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, str, object]]]):
        self.engines = engines

    def describe(self):
        return []

    def collect(self):
        running = GaugeMetricFamily(PREFIX + "num_requests_running",
                                    "Sequences prefilling or decoding.", labels=LABELS)
        waiting = GaugeMetricFamily(PREFIX + "num_requests_waiting",
                                    "Sequences waiting for a slot.", labels=LABELS)
        queries = CounterMetricFamily(PREFIX + "prefix_cache_queries",
                                      "Prompt tokens looked up in the prefix cache.",
                                      labels=LABELS)
        hits = CounterMetricFamily(PREFIX + "prefix_cache_hits",
                                   "Prompt tokens found in the prefix cache.", labels=LABELS)
        for name, version, engine in self.engines():
            labels = [name, version]
            running.add_metric(labels, engine.num_running)
            waiting.add_metric(labels, engine.num_waiting)
            queries.add_metric(labels, engine.prefix.queries)
            hits.add_metric(labels, engine.prefix.hits)
        yield from (running, waiting, queries, hits)
