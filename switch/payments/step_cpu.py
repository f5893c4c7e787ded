"""Where a worker's CPU goes, step by step (`SWITCH_STEP_CPU=1`, or `make bench BENCH_ARGS=--steps`).

A sampling profiler cannot say this on a saturated machine: py-spy's samples of a worker holding the GIL
include the time the kernel has it descheduled, which falls mostly right after a socket write (the woken
reader runs first), so asyncpg's execute and the Redis send look dearer than they are. Here each step's
coroutine is driven through `Timed`, which adds up the thread's CPU time (`time.thread_time`) of the
step's own segments: from each resume to its next wait. What other tasks run while the step waits is not
counted. Off by default: the two clock reads per segment cost about a microsecond each.

Counted per (operation, step) in `switch_step_cpu_seconds_total` and `switch_step_calls_total`; labels are
the operations' fixed step lists (switch.payments.operations), never a merchant.
"""

from __future__ import annotations

import os
import time
from collections.abc import Coroutine, Generator
from typing import Any

from prometheus_client import Counter

from switch.common.metrics import FlushedCounts

enabled = os.environ.get("SWITCH_STEP_CPU") == "1"

cpu_seconds = Counter("switch_step_cpu_seconds_total", "Thread CPU time of each pipeline step's own code "
                      "(SWITCH_STEP_CPU=1 only)", ["operation", "step"])
calls = Counter("switch_step_calls_total", "Pipeline steps run (SWITCH_STEP_CPU=1 only)", ["operation", "step"])
_cpu_seconds = FlushedCounts(cpu_seconds)
_calls = FlushedCounts(calls)


class Timed:
    """Awaits `coroutine` as it is, adding the CPU time of its own segments to its (operation, step)."""

    __slots__ = ("coroutine", "labels")

    def __init__(self, operation: str, step: str, coroutine: Coroutine[Any, Any, None]) -> None:
        self.coroutine = coroutine
        self.labels = (operation, step)

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, clock = self.coroutine, time.thread_time
        spent = 0.0
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                started = clock()
                try:
                    waiting_on = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
                except StopIteration:
                    spent += clock() - started
                    return
                spent += clock() - started
                sent, thrown = None, None
                try:
                    sent = yield waiting_on
                except BaseException as error:  # noqa: BLE001 - handed to the step, as a plain await would
                    thrown = error
        finally:
            _cpu_seconds.add(self.labels, spent)
            _calls.add(self.labels)
