"""Prometheus metrics of the switch. Labels are bounded sets (routes, statuses, networks): never ids,
never card data. With several workers, prometheus-client's multiprocess mode aggregates them
(PROMETHEUS_MULTIPROC_DIR is set by `switch serve` before the workers start)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0)

http_requests = Counter("switch_http_requests_total", "Merchant API requests", ["method", "route", "status"])
http_latency = Histogram("switch_http_request_duration_seconds", "Merchant API latency", ["route"],
                         buckets=LATENCY_BUCKETS_S)
idempotent_replays = Counter("switch_idempotent_replays_total", "Requests answered from a stored response")
batch_splits = Counter("switch_batch_splits_total", "Group-committed batches split in halves to isolate a row "
                       "that Postgres refused", ["statement"])
late_responses = Counter("switch_network_late_responses_total", "Network responses after their request timed out",
                         ["network", "mti"])

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Labelled children, looked up once: labels() costs about 1 µs a call. Bounded by the label sets (methods
# httptools accepts, our routes, HTTP statuses).
_requests: dict[tuple[str, str, int], Any] = {}
_latencies: dict[str, Any] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    counter = _requests.get((method, route, status))
    if counter is None:
        counter = _requests[(method, route, status)] = http_requests.labels(method, route, str(status))
    counter.inc()
    histogram = _latencies.get(route)
    if histogram is None:
        histogram = _latencies[route] = http_latency.labels(route)
    histogram.observe(seconds)


class FlushedCounts:
    """Increments of a labelled Counter added up in plain numbers and handed to prometheus-client at most
    once every FLUSH_INTERVAL_S: in multiprocess mode each increment is a locked write to a shared file,
    too dear for every payment. Keys are label tuples (empty for an unlabelled counter), bounded by the
    caller's label sets."""

    FLUSH_INTERVAL_S = 1.0
    every: list[FlushedCounts] = []              # so a worker that stops hands over what it still holds

    def __init__(self, counter: Counter, known: Iterable[tuple[str, ...]] = ()) -> None:
        FlushedCounts.every.append(self)
        self.counter = counter
        self.amounts: dict[tuple[str, ...], float] = {}
        self.children: dict[tuple[str, ...], Any] = {}
        self.flush_scheduled = False
        for labels in known:                     # exported at 0 from the start, so rates have a series
            self._child(labels)

    def add(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self.amounts[labels] = self.amounts.get(labels, 0) + amount
        if not self.flush_scheduled:
            self.flush_scheduled = True
            try:
                asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL_S, self.flush)
            except RuntimeError:                 # no loop (a tool, a test): at once
                self.flush()

    def flush(self) -> None:
        self.flush_scheduled = False
        amounts, self.amounts = self.amounts, {}
        for labels, amount in amounts.items():
            self._child(labels).inc(amount)

    def _child(self, labels: tuple[str, ...]) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.counter.labels(*labels) if labels else self.counter
        return child


def flush_all() -> None:
    """At a clean stop: the counts of the last second would otherwise be lost with the process."""
    for counts in FlushedCounts.every:
        counts.flush()


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
