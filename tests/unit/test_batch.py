"""The group-commit batcher: batching per loop pass, bounded queue, errors reach every waiter."""

from __future__ import annotations

import asyncio

import pytest

from switch.common.batch import Batcher, BatchQueueFull


async def test_concurrent_items_leave_in_few_batches() -> None:
    seen: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        seen.append(items)
        await release.wait()
        return [item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(run, size_max=100, inflight_max=1)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(250)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks)
    assert results == [i * 2 for i in range(250)]
    assert [len(batch) for batch in seen] == [100, 100, 50]


async def test_a_lone_item_is_sent_at_once() -> None:
    async def run(items: list[str]) -> list[str]:
        return [item.upper() for item in items]

    batcher: Batcher[str, str] = Batcher(run)
    assert await asyncio.wait_for(batcher.submit("a"), 1.0) == "A"
    assert batcher.batches == 1


async def test_a_failed_batch_fails_every_waiter_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return items

    batcher: Batcher[int, int] = Batcher(run, inflight_max=1)
    first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in first)
    assert await batcher.submit(3) == 3


async def test_per_item_errors_are_raised_to_their_own_waiter() -> None:
    async def run(items: list[int]) -> list[object]:
        return [ValueError(item) if item % 2 else item for item in items]

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)


async def test_the_queue_is_bounded() -> None:
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        await gate.wait()
        return items

    batcher: Batcher[int, int] = Batcher(run, size_max=2, inflight_max=1, queue_max=4)
    first = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
    await asyncio.sleep(0.01)          # two items in the running batch, two waiting
    second = [asyncio.create_task(batcher.submit(i)) for i in range(4, 6)]
    await asyncio.sleep(0.01)          # four waiting: the queue is full
    assert len(batcher.waiting) == 4
    with pytest.raises(BatchQueueFull):
        await batcher.submit(99)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*first, *second), 5) == list(range(6))


class RefusedRow(Exception):
    pass


async def test_a_refused_batch_is_split_until_the_bad_items_fail_alone() -> None:
    statements: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        statements.append(items)
        if 13 in items or 40 in items:
            raise RefusedRow("a row was refused")       # atomic: the whole statement fails
        return [item * 2 for item in items]

    splits: list[int] = []
    batcher: Batcher[int, int] = Batcher(run, size_max=64, inflight_max=1,
                                         splittable=lambda error: isinstance(error, RefusedRow),
                                         on_split=lambda: splits.append(1))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(64)), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, RefusedRow)] == [13, 40]
    assert all(r == i * 2 for i, r in enumerate(results) if i not in (13, 40))
    assert batcher.splits == len(splits) and 0 < len(splits) <= 2 * 6   # log2(64) levels, two bad items
    assert len(statements) < 64                                        # not row by row


async def test_an_error_of_the_whole_batch_is_not_split() -> None:
    calls = 0

    async def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("the connection went away")

    batcher: Batcher[int, int] = Batcher(run, size_max=16, inflight_max=1,
                                         splittable=lambda error: isinstance(error, RefusedRow))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(16)), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results) and calls == 1


async def test_with_a_linger_a_trickle_leaves_together_and_a_full_batch_at_once() -> None:
    seen: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        seen.append(items)
        return items

    batcher: Batcher[int, int] = Batcher(run, size_max=4, inflight_max=1, linger_s=0.2)
    trickle = []
    for item in range(3):                                 # one item per loop pass, within the linger
        trickle.append(asyncio.create_task(batcher.submit(item)))
        await asyncio.sleep(0.01)
    assert seen == []                                     # still lingering
    assert await asyncio.gather(*trickle) == [0, 1, 2]
    assert seen == [[0, 1, 2]]
    full = [asyncio.create_task(batcher.submit(item)) for item in range(10, 14)]
    assert await asyncio.wait_for(asyncio.gather(*full), 0.1) == [10, 11, 12, 13]   # full: no linger
    assert seen[-1] == [10, 11, 12, 13]
