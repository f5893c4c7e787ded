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

# A connection closed by a stopping worker: its write side is shut first (the peer reads the last answers
# and the end), what the peer still sends is read and dropped, and it is closed when the peer closes or
# after this long. Closed at once with unread bytes, the kernel would reset it and the peer could lose
# those last answers.
LINGER_S = 1.0


def close_gently(transport: asyncio.Transport) -> None:
    """Half-close `transport` and close it when the peer does, at most LINGER_S later (a transport that
    cannot half-close, TLS's, is closed at once). Its protocol must drop what it reads from now on."""
    if transport.is_closing():
        return
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    transport.resume_reading()
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)


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
        `timeout_s`: how many were still running then (an HTTP connection's queue of requests counts
        once). A connection made after this (accepted just before the port closed) closes as it is made."""
        self.stopping = True
        for connection in list(self.connections):
            connection.close_when_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self.running
