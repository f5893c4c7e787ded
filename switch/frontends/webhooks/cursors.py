"""First attempts come from a cursor per endpoint over its merchant's events, not from queued rows: a worker
holds the endpoint through a lease, reads the events past the cursor a batch at a time (in the events'
(xid, id) order, only from transactions older than the oldest one still running, so none that commits later
falls behind the cursor), and moves the cursor past a batch once every event of it has had its first attempt
recorded. A first attempt that succeeds writes only its log row; one that fails queues the delivery to be
tried again (webhook_deliveries). A worker that dies leaves the cursor where its last full batch ended: the
next holder sends the rest again, with the same `webhook-id`.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

Position = tuple[int, int]           # (xid, event id)


class Batch:
    """Events read past the cursor at once: how many attempts of them are not yet recorded, and where the
    cursor goes once none is."""

    __slots__ = ("left", "target")

    def __init__(self, left: int, target: Position) -> None:
        self.left = left
        self.target = target


class Job:
    """One attempt to make: an event to an endpoint, the first (from the cursor) or a later one (queued)."""

    __slots__ = ("attempts", "batch", "body", "cursor", "endpoint", "event", "queued_at", "sending")

    def __init__(self, endpoint: Any, event: dict[str, Any], attempts: int, queued_at: datetime,
                 cursor: CursorState | None = None, batch: Batch | None = None) -> None:
        self.endpoint = endpoint      # a row with endpoint_id, url, secret, previous_secret, status, format
        self.event = event            # as an `events` row reads: id, type, object_id, data, created_at
        self.attempts = attempts
        self.queued_at = queued_at
        self.cursor = cursor          # for a first attempt: the cursor and the batch it was read in
        self.batch = batch
        self.body: bytes | None = None
        self.sending = False          # counted in flight (until its answer, not its record)

    @property
    def first(self) -> bool:
        return self.cursor is not None


class CursorState:
    """This worker's hold on one endpoint's cursor: where it stands (as written, or about to be), where
    the next read starts, and the batches read and not yet recorded (at most BATCHES_MAX: the next is read
    while the last is in flight, so an endpoint's attempts do not wait for a batch's slowest one)."""

    BATCHES_MAX = 2
    # Caught up (the last read found less than a batch): the next read waits this long, so an endpoint
    # that keeps up costs a read per CAUGHT_UP_READ_S, not one per pass.
    CAUGHT_UP_READ_S = 0.1

    __slots__ = ("batches", "broken", "endpoint", "held", "next_read_at", "position", "read_to")

    def __init__(self, endpoint: asyncpg.Record) -> None:
        self.endpoint = endpoint
        self.position: Position = (endpoint["cursor_xid"], endpoint["cursor_event_id"])
        self.read_to = self.position
        self.held = True
        self.batches: deque[Batch] = deque()
        self.next_read_at = 0.0
        self.broken = False                # an attempt was lost: the cursor is read again as written

    @property
    def idle(self) -> bool:
        return not self.batches

    def wants_more(self, now: float) -> bool:
        return self.held and not self.broken and len(self.batches) < self.BATCHES_MAX and now >= self.next_read_at

    def start_batch(self, events: list[asyncpg.Record], batch_max: int, horizon: int,
                    now: float = 0.0) -> tuple[Batch | None, Position | None]:
        """Take a fetched batch: the batch, or where the cursor can move at once when it is empty (and
        nothing else is in flight)."""
        end: Position = (horizon, 0)
        if len(events) >= batch_max:
            end = (events[-1]["xid"], events[-1]["event_id"])
        else:
            self.next_read_at = now + self.CAUGHT_UP_READ_S
        if not events:
            if self.batches or end <= self.read_to:
                return None, None
            self.read_to = end
            return None, self._moved_to(end)
        self.read_to = max(self.read_to, end)
        batch = Batch(len(events), end)
        self.batches.append(batch)
        return batch, None

    def settled(self, batch: Batch) -> Position | None:
        """One attempt of `batch` recorded: where the cursor moves when that completes the oldest batches
        (or None)."""
        batch.left -= 1
        moved = None
        while self.batches and not self.batches[0].left:
            moved = self._moved_to(self.batches.popleft().target) or moved
        return moved

    def _moved_to(self, end: Position) -> Position | None:
        if end <= self.position:
            return None
        self.position = end
        return end


def cursor_owner(port: int, index: int) -> str:
    """The name of a worker slot's cursor leases: a worker started again in the slot of one that died takes
    back its cursors at once, instead of waiting for their leases to run out (a slot is never run by two
    workers at once: the supervisor starts one only after the last one's exit)."""
    return f"{socket.gethostname()[:40]}:{port}:{index}"


def new_owner() -> str:
    """A name for a deliverer outside the worker slots (a test's), unique across hosts and restarts."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def cursor_jobs(state: CursorState, batch: Batch, events: Iterable[asyncpg.Record]) -> list[Job]:
    return [Job(state.endpoint, {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"],
                                 "data": row["data"], "created_at": row["created_at"]},
                0, row["created_at"], state, batch) for row in events]


def queued_job(row: asyncpg.Record) -> Job:
    """A claimed queued delivery (a retry or a replay)."""
    return Job(row, {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"], "data": row["data"],
                     "created_at": row["event_created_at"]}, row["attempts"], row["queued_at"])
