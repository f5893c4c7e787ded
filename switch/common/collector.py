"""Keeping the cyclic garbage collector's full passes short in a process that holds many long-lived objects.

A full collection walks every object the collector tracks, and the process answers nothing meanwhile. The
simulator keeps up to 200,000 transactions and a million card accounts: in a 300 s bench its full passes
took 68 ms at 44,000 objects and 427 ms at 491,000, freeing nothing, and every network answer waited for
them (p99 of 660-800 ms in the 10 s windows of a soak where they fell). Objects that have lived through a
freeze (gc.freeze) are never walked again; reference counting still frees them when they are dropped.
"""

from __future__ import annotations

import asyncio
import gc

FREEZE_INTERVAL_S = 10.0


YOUNG_THRESHOLD = 7_000     # allocations between young collections, where a process raises it (700 by default)


def freeze_survivors(generation: int = 2) -> None:
    """Collect up to `generation`, then freeze what survived. A cycle that is garbage when frozen is never
    freed, so a one-off freeze (start-up, before a measurement) collects everything first; a periodic one,
    which must stay short, collects the young generations only (at most a few thousand objects) and
    freezes with the rest whatever garbage the oldest generation holds."""
    gc.collect(generation)
    gc.freeze()


async def freeze_every(interval_s: float = FREEZE_INTERVAL_S) -> None:
    """Freeze the survivors every `interval_s`, for a process whose long-lived state keeps growing: a full
    pass then walks only what the last interval made. Garbage cycles that reached the oldest generation, and
    cycles still reachable when frozen, are never freed; the simulator's full passes freed nothing, so it
    makes none that live that long."""
    while True:
        await asyncio.sleep(interval_s)
        freeze_survivors(generation=1)
