"""FlushedCounts: per-payment increments added up in plain numbers, handed to prometheus-client at most once
a second, and at once when a worker stops (flush_all)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, generate_latest

from switch.common.metrics import FlushedCounts, flush_all


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
