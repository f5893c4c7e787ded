"""Prometheus metrics of the switch. Labels are bounded sets (routes, statuses, networks): never ids,
never card data. With several workers, prometheus-client's multiprocess mode aggregates them
(PROMETHEUS_MULTIPROC_DIR is set by `switch serve` before the workers start)."""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

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

Held = TypeVar("Held")


class Flushed(Generic[Held]):
    """Per-payment metric updates added up in plain numbers and handed to prometheus-client at most once
    every FLUSH_INTERVAL_S: in multiprocess mode each update is a locked write to a shared file (0.8 µs a
    counter increment, 1.6 a histogram observation), too dear for every payment. Keys are label tuples
    (empty for an unlabelled metric), bounded by the caller's label sets."""

    FLUSH_INTERVAL_S = 1.0
    every: list[Flushed[Any]] = []               # so a worker that stops hands over what it still holds

    def __init__(self) -> None:
        Flushed.every.append(self)
        self.held: dict[tuple[str, ...], Held] = {}
        self.flush_scheduled = False

    def _due(self) -> None:
        """Something is held: a flush within FLUSH_INTERVAL_S, unless one is scheduled already."""
        if self.flush_scheduled:
            return
        self.flush_scheduled = True
        try:
            asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL_S, self.flush)
        except RuntimeError:                     # no loop (a tool, a test): at once
            self.flush()

    def flush(self) -> None:
        self.flush_scheduled = False
        held, self.held = self.held, {}
        for labels, value in held.items():
            self._hand_over(labels, value)

    def _hand_over(self, labels: tuple[str, ...], value: Held) -> None:
        raise NotImplementedError


class FlushedCounts(Flushed[float]):
    """A labelled Counter's increments, flushed (see Flushed)."""

    def __init__(self, counter: Counter, known: Iterable[tuple[str, ...]] = ()) -> None:
        super().__init__()
        self.counter = counter
        self.children: dict[tuple[str, ...], Any] = {}
        for labels in known:                     # exported at 0 from the start, so rates have a series
            self._child(labels)

    def add(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self.held[labels] = self.held.get(labels, 0) + amount
        self._due()

    def _hand_over(self, labels: tuple[str, ...], amount: float) -> None:
        self._child(labels).inc(amount)

    def _child(self, labels: tuple[str, ...]) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.counter.labels(*labels) if labels else self.counter
        return child


class _Observed:
    """One label set's observations since the last flush: a count per bucket and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0


class FlushedHistogram(Flushed[_Observed]):
    """A labelled Histogram's observations, flushed (see Flushed), handed over as the increments
    prometheus-client's own observe() makes (its `_buckets` and `_sum` values;
    tests/unit/test_flushed_counts.py checks the exposition against observe())."""

    def __init__(self, histogram: Histogram) -> None:
        super().__init__()
        self.histogram = histogram
        self.bounds: tuple[float, ...] = tuple(histogram._upper_bounds)   # the last is +Inf

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        observed = self.held.get(labels)
        if observed is None:
            observed = self.held[labels] = _Observed(len(self.bounds))
        observed.counts[bisect_left(self.bounds, seconds)] += 1
        observed.total += seconds
        self._due()

    def _hand_over(self, labels: tuple[str, ...], observed: _Observed) -> None:
        child = self.histogram.labels(*labels) if labels else self.histogram
        child._sum.inc(observed.total)
        for bucket, count in zip(child._buckets, observed.counts, strict=True):
            if count:
                bucket.inc(count)


_requests = FlushedCounts(http_requests)
_latencies = FlushedHistogram(http_latency)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Label values are bounded: methods httptools accepts, our routes, HTTP statuses."""
    _requests.add((method, route, str(status)))
    _latencies.observe((route,), seconds)


def flush_all() -> None:
    """At a clean stop: the counts of the last second would otherwise be lost with the process."""
    for held in Flushed.every:
        held.flush()


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
