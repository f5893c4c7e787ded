"""FlushedCounts: per-payment increments added up in plain numbers, handed to prometheus-client at most once
a second, and at once when a worker stops (flush_all)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from switch.common.metrics import FlushedCounts, FlushedHistogram, flush_all


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_known_series_are_exported_at_zero_and_nothing_moves_until_the_flush() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_payments", "test", ["result"], registry=registry)
    counts = FlushedCounts(counter, [("succeeded",)])
    assert 't_payments_total{result="succeeded"} 0.0' in exposition(registry)

    async def scenario() -> tuple[str, str]:
        counts.add(("succeeded",))
        counts.add(("succeeded",))
        counts.add(("declined",), 3)
        before = exposition(registry)
        await asyncio.sleep(FlushedCounts.FLUSH_INTERVAL_S + 0.2)
        return before, exposition(registry)

    before, after = asyncio.run(scenario())
    assert 't_payments_total{result="succeeded"} 0.0' in before and "declined" not in before
    assert 't_payments_total{result="succeeded"} 2.0' in after
    assert 't_payments_total{result="declined"} 3.0' in after


def test_flush_all_hands_over_what_is_held() -> None:
    registry = CollectorRegistry()
    counts = FlushedCounts(Counter("t_seconds", "test", registry=registry))

    async def scenario() -> None:
        counts.add((), 0.25)
        counts.add((), 0.5)
        flush_all()

    asyncio.run(scenario())
    assert "t_seconds_total 0.75" in exposition(registry)


def test_without_a_loop_each_count_goes_at_once() -> None:
    registry = CollectorRegistry()
    counts = FlushedCounts(Counter("t_tool", "test", ["kind"], registry=registry))
    counts.add(("a",))
    assert 't_tool_total{kind="a"} 1.0' in exposition(registry)


def test_a_flushed_histogram_exports_what_observe_would() -> None:
    """Bucket counts, count and sum equal those of prometheus-client's own observe() on the same values,
    bounds included (a value on a bucket's bound counts in that bucket)."""
    values = [0.0004, 0.001, 0.001, 0.003, 0.02, 0.5, 0.7, 7.0, 99.0]
    direct_registry, flushed_registry = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.5, 5.0)
    direct = Histogram("t_latency_seconds", "test", ["route"], buckets=buckets, registry=direct_registry)
    flushed = FlushedHistogram(
        Histogram("t_latency_seconds", "test", ["route"], buckets=buckets, registry=flushed_registry)
    )

    async def scenario() -> str:
        for value in values:
            direct.labels("pay").observe(value)
            flushed.observe(("pay",), value)
        held = exposition(flushed_registry)
        flush_all()
        return held

    held = asyncio.run(scenario())
    assert "t_latency_seconds_count" not in held
    lines = [
        line for line in exposition(flushed_registry).splitlines() if not line.startswith("t_latency_seconds_created")
    ]
    expected = [
        line for line in exposition(direct_registry).splitlines() if not line.startswith("t_latency_seconds_created")
    ]
    assert lines == expected
    assert 't_latency_seconds_bucket{le="0.001",route="pay"} 3.0' in lines
    assert 't_latency_seconds_count{route="pay"} 9.0' in lines
