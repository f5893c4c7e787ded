"""Deadlines for the many waits of the hot path that end long before them: a vault request, a network
exchange, a webhook attempt. One timer sweeps them every RESOLUTION_S, where a timer each (`loop.call_later`,
then `cancel`) cost 2.7-3.9 µs in uvloop, three to four times a payment.

`after(timeout_s, callback, *args)` files the deadline in the slot of the sweep that follows its time (a
timing wheel: a dictionary of lists, by slot number), and `cancel()` on what it returns drops the callback
and its arguments at once, so nothing the wait held (an answer with card data) is kept until the deadline;
the entry itself goes when its slot is swept. A deadline fires at most RESOLUTION_S late, in its slot's
order. Sweeping stops while nothing is filed.

The hot path's owners (the vault client, the network links, the webhooks' connections) share one
`Deadlines` per thread (`shared()`): a sweeper each, 10 ms apart, cost more than the timers they saved. A
`Deadlines` follows the event loop it is used in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

log = logging.getLogger(__name__)

RESOLUTION_S = 0.02


class Deadline(msgspec.Struct, gc=False):
    """A deadline as filed. Not tracked by the collector: thousands are filed at a time (a webhook attempt's
    for 10 s) and they outlive the young generation; what they hold (the callback and its arguments) is let
    go when they fire or are cancelled, which breaks any cycle through them."""

    at: float
    callback: Callable[..., object] | None
    args: tuple[Any, ...]

    def cancel(self) -> None:
        self.callback, self.args = None, ()


class Deadlines:
    def __init__(self) -> None:
        self.slots: dict[int, list[Deadline]] = {}
        self.swept = 0                           # the last slot swept
        self.sweeping: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def after(self, timeout_s: float, callback: Callable[..., object], *args: Any) -> Deadline:
        """Call `callback(*args)` `timeout_s` from now (at most RESOLUTION_S later), unless cancelled."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:                # first used, or used again in a new loop: the old one's go
            self.loop, self.slots, self.sweeping = loop, {}, None
        now = loop.time()
        deadline = Deadline(now + timeout_s, callback, args)
        if timeout_s <= 0:                       # a budget already spent: at once, not a sweep later
            loop.call_soon(_fire, deadline)
            return deadline
        slot = int(deadline.at / RESOLUTION_S) + 1
        filed = self.slots.get(slot)
        if filed is None:
            self.slots[slot] = [deadline]
        else:
            filed.append(deadline)
        if self.sweeping is None:
            self.swept = int(now / RESOLUTION_S)
            self.sweeping = loop.call_later(RESOLUTION_S, self._sweep)
        return deadline

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now_slot = int(loop.time() / RESOLUTION_S)
        for slot in range(self.swept + 1, now_slot + 1):
            for deadline in self.slots.pop(slot, ()):
                _fire(deadline)
        self.swept = max(self.swept, now_slot)
        self.sweeping = loop.call_later(RESOLUTION_S, self._sweep) if self.slots else None


def _fire(deadline: Deadline) -> None:
    """The deadline's callback, once, unless it was cancelled; one that fails does not stop the sweep."""
    callback, args = deadline.callback, deadline.args
    if callback is None:
        return
    deadline.cancel()
    try:
        callback(*args)
    except Exception:
        log.exception("a deadline's callback failed")


_local = threading.local()


def shared() -> Deadlines:
    """This thread's `Deadlines`, shared by the hot path's owners."""
    deadlines: Deadlines | None = getattr(_local, "deadlines", None)
    if deadlines is None:
        deadlines = _local.deadlines = Deadlines()
    return deadlines
