"""A timer's callback for waiting on a future with a deadline: `loop.call_later(s, time_out, future)`, then
the timer cancelled once the future is done. A timer handle costs less than asyncio.timeout's context manager
and rescheduling, which showed in the profiles of the paths that use this (the fraud screen's counters, the
load generator's requests)."""

from __future__ import annotations

import asyncio
from typing import Any


def time_out(future: asyncio.Future[Any]) -> None:
    """Fail `future` with TimeoutError, unless it is done already."""
    if not future.done():
        future.set_exception(TimeoutError("no answer in time"))
