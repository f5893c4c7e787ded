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
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

Position = tuple[int, int]           # (xid, event id)


class Job:
    """One attempt to make: an event to an endpoint, the first (from the cursor) or a later one (queued)."""

    __slots__ = ("attempts", "body", "cursor", "endpoint", "event", "first", "queued_at")

    def __init__(self, endpoint: Any, event: dict[str, Any], attempts: int, queued_at: datetime,
                 cursor: CursorState | None) -> None:
        self.endpoint = endpoint      # a row with endpoint_id, url, secret, previous_secret, status, format
        self.event = event            # as an `events` row reads: id, type, object_id, data, created_at
        self.attempts = attempts
        self.queued_at = queued_at
        self.cursor = cursor          # the batch it belongs to, for a first attempt
        self.first = cursor is not None
        self.body: bytes | None = None


class CursorState:
    """This worker's hold on one endpoint's cursor: where it stands and the batch in flight."""

    __slots__ = ("broken", "endpoint", "held", "left", "position", "target")

    def __init__(self, endpoint: asyncpg.Record) -> None:
        self.endpoint = endpoint
        self.position: Position = (endpoint["cursor_xid"], endpoint["cursor_event_id"])
        self.held = True
        self.left = 0                      # attempts of the batch not yet recorded
        self.target: Position | None = None  # where the cursor goes once they are
        self.broken = False                # an attempt of the batch was lost: the batch is read again

    @property
    def idle(self) -> bool:
        return self.target is None

    def start_batch(self, events: list[asyncpg.Record], batch_max: int, horizon: int) -> Position | None:
        """Take a fetched batch; where the cursor can move at once when it is empty (or None)."""
        end: Position = (horizon, 0)
        if len(events) >= batch_max:
            end = (events[-1]["xid"], events[-1]["event_id"])
        if not events:
            return self._moved_to(end)
        self.left, self.target = len(events), end
        return None

    def settled(self) -> Position | None:
        """One attempt of the batch recorded; where the cursor moves when it was the last (or None)."""
        self.left -= 1
        if self.left or self.target is None:
            return None
        target, self.target = self.target, None
        return self._moved_to(target)

    def _moved_to(self, end: Position) -> Position | None:
        if end <= self.position:
            return None
        self.position = end
        return end


def new_owner() -> str:
    """A name for this worker's leases, unique across restarts and hosts."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def cursor_jobs(state: CursorState, events: Iterable[asyncpg.Record]) -> list[Job]:
    return [Job(state.endpoint, {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"],
                                 "data": row["data"], "created_at": row["created_at"]},
                0, row["created_at"], state) for row in events]


def queued_job(row: asyncpg.Record) -> Job:
    """A claimed queued delivery (a retry or a replay)."""
    return Job(row, {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"], "data": row["data"],
                     "created_at": row["event_created_at"]}, row["attempts"], row["queued_at"], None)
