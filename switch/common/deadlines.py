"""Deadlines for the many waits of the hot path that end long before them: a vault request, a network
exchange, a webhook attempt. One timer per event loop sweeps them every RESOLUTION_S, where a timer each
(`loop.call_later`, then `cancel`) cost 2.7-3.9 µs in uvloop, three to four times a payment; filing and
cancelling a deadline here costs about 1.3.

`after(timeout_s, callback, *args)` files the deadline in the slot of the first sweep after its time (a
timing wheel: a dictionary of lists, by slot number; sweeps run on the slots' boundaries), and `cancel()`
on what it returns drops the callback and its arguments at once, so nothing the wait held (an answer with
card data) is kept until the deadline; the entry itself goes when its slot is swept. A deadline fires at most
RESOLUTION_S late (and as late as the loop itself runs); one already passed (a spent budget) at once.
Sweeping stops while nothing is filed. A sweep's work is bounded by what is filed, whatever the loop's clock
did since the last one (a stalled loop, a test's fake clock far ahead and back).

The hot path's owners (the vault client, the network links, the webhooks' connections) share one
`Deadlines` per thread (`shared()`): a sweeper each cost more than the timers they saved. A `Deadlines`
keeps a wheel for each event loop it is used in, so a wait in one loop is never dropped by another.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import msgspec

log = logging.getLogger(__name__)

RESOLUTION_S = 0.01


class Deadline(msgspec.Struct, gc=False):
    """A deadline as filed. Not tracked by the collector: thousands are filed at a time (a webhook attempt's
    for 10 s) and they outlive the young generation; what they hold (the callback and its arguments) is let
    go when they fire or are cancelled, which breaks any cycle through them."""

    at: float
    callback: Callable[..., object] | None
    args: tuple[Any, ...]

    def cancel(self) -> None:
        self.callback, self.args = None, ()


class _Wheel:
    """One event loop's deadlines (it holds no reference to the loop: the loop's timer holds it)."""

    def __init__(self) -> None:
        self.slots: dict[int, list[Deadline]] = {}
        self.swept = 0                           # the last slot swept
        self.sweeping = False
        self.next_at = 0.0                       # when the next sweep is due, on the loop's clock
        self.handle: asyncio.TimerHandle | None = None

    def file(self, loop: asyncio.AbstractEventLoop, deadline: Deadline, now: float) -> None:
        slot = int(deadline.at / RESOLUTION_S) + 1
        filed = self.slots.get(slot)
        if filed is None:
            self.slots[slot] = [deadline]
        else:
            filed.append(deadline)
        # Not sweeping, or the next sweep is further off than a slot: the loop's clock went back (a test's
        # fake clock undone), and the sweep due on the old clock would never come.
        if not self.sweeping or self.next_at > now + 2 * RESOLUTION_S:
            if self.handle is not None:
                self.handle.cancel()
            self.swept = int(now / RESOLUTION_S)
            self._schedule(loop, self.swept)

    def _schedule(self, loop: asyncio.AbstractEventLoop, swept: int) -> None:
        self.sweeping, self.next_at = True, (swept + 1) * RESOLUTION_S
        self.handle = loop.call_at(self.next_at, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sweeping, self.handle = False, None
        now_slot = int(loop.time() / RESOLUTION_S)
        try:
            for slot in self._due(now_slot):
                for deadline in self.slots.pop(slot, ()):
                    _fire(deadline)
        finally:
            self.swept = now_slot
            if self.slots:
                self._schedule(loop, self.swept)

    def _due(self, now_slot: int) -> range | list[int]:
        """The slots up to now's: the few since the last sweep, or, when the clock jumped (a test's fake
        clock, a loop that stalled), the filed ones, so a sweep's work is bounded by what is filed."""
        if 0 <= now_slot - self.swept <= len(self.slots):
            return range(self.swept + 1, now_slot + 1)
        return sorted(slot for slot in self.slots if slot <= now_slot)


class Deadlines:
    def __init__(self) -> None:
        self.wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()
        self.loop: asyncio.AbstractEventLoop | None = None       # the loop last used, and its wheel
        self.wheel = _Wheel()

    def after(self, timeout_s: float, callback: Callable[..., object], *args: Any) -> Deadline:
        """Call `callback(*args)` `timeout_s` from now (at most RESOLUTION_S later), unless cancelled."""
        loop = asyncio.get_running_loop()
        wheel = self.wheel
        if loop is not self.loop:
            known = self.wheels.get(loop)
            wheel = self.wheels[loop] = _Wheel() if known is None else known
            self.loop, self.wheel = loop, wheel
        now = loop.time()
        deadline = Deadline(now + timeout_s, callback, args)
        if timeout_s <= 0:                       # a budget already spent: at once, not a sweep later
            loop.call_soon(_fire, deadline)
        else:
            wheel.file(loop, deadline, now)
        return deadline

    def filed(self) -> int:
        """Deadlines filed in the running loop's wheel and not swept yet (cancelled ones included)."""
        wheel = self.wheels.get(asyncio.get_running_loop())
        return sum(len(filed) for filed in wheel.slots.values()) if wheel is not None else 0


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
