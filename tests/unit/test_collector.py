"""Freezing the collector's survivors: what lives is frozen, a cycle that just became garbage is collected."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from collections.abc import Callable

from switch.common.collector import freeze_every, freeze_survivors


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _fresh_cycle() -> weakref.ref[Node]:
    node = Node()
    node.other = node
    return weakref.ref(node)


def test_survivors_are_frozen_and_a_fresh_cycle_is_collected_first() -> None:
    gc.disable()                                # no automatic pass may move the cycle on before the freeze
    try:
        alive = Node()
        cycle = _fresh_cycle()
        before = gc.get_freeze_count()
        freeze_survivors(generation=1)
        assert cycle() is None                  # garbage when frozen would mean never collected
        assert gc.get_freeze_count() > before
        assert alive.other is None
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_one_off_freeze_collects_old_garbage_first() -> None:
    gc.disable()
    try:
        node = Node()
        node.other = node
        cycle = weakref.ref(node)
        gc.collect(1)
        gc.collect(1)                           # alive through two young passes: in the oldest generation
        del node                                # garbage now, and only a full pass finds it
        freeze_survivors()
        assert cycle() is None
    finally:
        gc.enable()
        gc.unfreeze()


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    """Whether `condition` came true within `within_s`: a busy machine may run the freezer's timer late."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _frozen(node: Node) -> bool:
    """Frozen: tracked, yet in none of the collector's three generations. (Not the freeze count: frozen
    objects that other tests of the session let go leave it, so it may fall while this one's rise.)"""
    return gc.is_tracked(node) and all(found is not node for found in gc.get_objects())


async def test_the_loop_freezes_again_every_interval() -> None:
    early = Node()
    task = asyncio.get_running_loop().create_task(freeze_every(0.01))
    try:
        assert await _until(lambda: _frozen(early))
        later = Node()                                  # made after a freeze: frozen by a later one
        assert not _frozen(later)
        assert await _until(lambda: _frozen(later))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
