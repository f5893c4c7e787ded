"""A stopping worker finishes what its front ends took on before it closes what they need.

On SIGTERM (a deploy, a restart) the worker stops listening, closes its idle connections at once and the
others after their last answer, and waits, at most a bound, for the requests it is running: a payment
waiting for its network's answer gets it and is answered, where closing the links under it would have
failed it and queued its reversal. Each front end's connections register here; `stop()` is the worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class Connection(Protocol):
    def close_when_idle(self) -> None:
        """Close now if nothing is running on it, else once its last answer is written; take no new work."""


class Drain:
    def __init__(self) -> None:
        self.stopping = False
        self.running = 0                     # requests (or pipelines of them) being handled
        self.connections: set[Connection] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def began(self) -> None:
        self.running += 1
        self._idle.clear()

    def ended(self) -> None:
        self.running -= 1
        if self.running <= 0:
            self.running = 0
            self._idle.set()

    async def stop(self, timeout_s: float) -> int:
        """Close the idle connections, the others as they finish, and wait for what runs, at most
        `timeout_s`: how many requests were still running then."""
        self.stopping = True
        for connection in list(self.connections):
            connection.close_when_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self.running
