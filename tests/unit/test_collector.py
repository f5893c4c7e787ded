"""Freezing the collector's survivors: what lives is frozen, a cycle that just became garbage is collected."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

from switch.common.collector import freeze_every, freeze_survivors


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _fresh_cycle() -> weakref.ref[Node]:
    node = Node()
    node.other = node
    return weakref.ref(node)


def test_survivors_are_frozen_and_a_fresh_cycle_is_collected_first() -> None:
    alive = Node()
    cycle = _fresh_cycle()
    before = gc.get_freeze_count()
    try:
        freeze_survivors()
        assert cycle() is None                  # garbage when frozen would mean never collected
        assert gc.get_freeze_count() > before
        assert alive.other is None
    finally:
        gc.unfreeze()


async def test_the_loop_freezes_again_every_interval() -> None:
    before = gc.get_freeze_count()
    task = asyncio.get_running_loop().create_task(freeze_every(0.01))
    try:
        await asyncio.sleep(0.05)
        first = gc.get_freeze_count()
        [Node() for _ in range(1000)]
        kept = [Node() for _ in range(1000)]
        await asyncio.sleep(0.05)
        assert first > before
        assert gc.get_freeze_count() >= first + len(kept)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
