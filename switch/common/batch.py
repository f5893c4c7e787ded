"""Group commit: what concurrent requests submit during one event-loop pass runs as one batch.

A lone request is sent at once (a batch of one, no added latency). Under load, while ``inflight_max``
batches are already running, new items wait in the queue and leave together as the next batch, so one
Postgres statement or one Redis pipeline carries many payments. The queue is bounded: past
``queue_max`` waiting items, ``submit`` raises ``BatchQueueFull`` so overload sheds with a clear error.

A batch fails as a whole when one of its items is bad (a statement is atomic). When the error says so
(``splittable``), the batch is split in halves and each half tried again, down to single items: the bad
item gets its error alone and every good one its normal result, for log2(size) more statements. Errors of
the whole batch (a lost connection, a timeout) are not split: every waiter hears them at once.

Work that nobody waits on in a hurry (a log line) can set ``linger_s``: a batch leaves that long after its
first item (or at once when ``size_max`` items wait), so a steady trickle makes few, large statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchQueueFull(Exception):
    """More work is waiting than ``queue_max``: the caller should answer a retryable overload error."""


class Batcher(Generic[Item, Result]):
    def __init__(self, run: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]], *,
                 size_max: int = 256, inflight_max: int = 2, queue_max: int = 20_000,
                 splittable: Callable[[BaseException], bool] = lambda error: False,
                 on_split: Callable[[], None] = lambda: None, linger_s: float = 0.0) -> None:
        assert size_max > 0 and inflight_max > 0 and queue_max >= size_max
        self.run = run
        self.splittable = splittable
        self.on_split = on_split
        self.splits = 0
        self.size_max = size_max
        self.inflight_max = inflight_max
        self.queue_max = queue_max
        self.linger_s = linger_s
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.inflight = 0
        self.flush_scheduled = False
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> Result:
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Queue `item` for the next batch and return its future, without waiting for it."""
        if len(self.waiting) >= self.queue_max:
            raise BatchQueueFull(f"{len(self.waiting)} items already waiting")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self.waiting.append((item, future))
        if not self.flush_scheduled:
            self._schedule(loop)
        elif self.linger_s and len(self.waiting) == self.size_max:
            loop.call_soon(self._flush)                  # full: no need to wait out the linger
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush_scheduled = True
        if self.linger_s and len(self.waiting) < self.size_max:
            loop.call_later(self.linger_s, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self.waiting and self.inflight < self.inflight_max:
            batch, self.waiting = self.waiting[:self.size_max], self.waiting[self.size_max:]
            self.inflight += 1
            loop.create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._isolating([item for item, _ in batch])
        finally:
            self.inflight -= 1
            if self.waiting and not self.flush_scheduled:
                self._schedule(asyncio.get_running_loop())
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _isolating(self, items: list[Item]) -> Sequence[Result | BaseException]:
        """Run `items`; if they fail together with a splittable error, run each half on its own."""
        try:
            return await self.run(items)
        except BaseException as error:  # noqa: BLE001 - every waiter must hear about the failure
            if len(items) == 1 or not self.splittable(error):
                return [error] * len(items)
        self.splits += 1
        self.on_split()
        half = len(items) // 2
        return [*await self._isolating(items[:half]), *await self._isolating(items[half:])]
