"""switch.payments.step_cpu: a step's own CPU time is counted, not what other tasks run while it waits, and
the step behaves as a plain await (its exceptions, a cancellation thrown into it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from switch.payments import step_cpu

BURN_S = 0.02


def burn(seconds: float) -> None:
    """Spend `seconds` of this thread's CPU time."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def counted(operation: str, step: str) -> float:
    step_cpu._cpu_seconds.flush()                            # noqa: SLF001 - read what was added up
    return step_cpu.cpu_seconds.labels(operation, step)._value.get()  # noqa: SLF001


async def test_only_the_steps_own_segments_are_counted() -> None:
    release = asyncio.Event()

    async def step() -> None:
        burn(BURN_S)
        await release.wait()
        burn(BURN_S)

    async def other() -> None:
        await asyncio.sleep(0)
        burn(3 * BURN_S)                                       # runs while the step waits
        release.set()

    before = counted("test", "own_segments")
    await asyncio.gather(step_cpu.Timed("test", "own_segments", step()), other())
    spent = counted("test", "own_segments") - before
    assert 2 * BURN_S <= spent < 4 * BURN_S, spent              # 5 x BURN_S if the other task's were counted


async def test_a_step_fails_and_is_cancelled_as_a_plain_await_would() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("the step's own error")

    with pytest.raises(ValueError, match="the step's own error"):
        await step_cpu.Timed("test", "failing", failing())

    cleaned = []

    async def waiting() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)

    task = asyncio.ensure_future(step_cpu.Timed("test", "waiting", waiting()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    step_cpu._calls.flush()                                     # noqa: SLF001
    assert step_cpu.calls.labels("test", "waiting")._value.get() == 1  # noqa: SLF001
