"""Webhook delivery: every worker takes due deliveries from the queue in Postgres (FOR UPDATE SKIP LOCKED,
with a lease), at most PER_ENDPOINT_MAX of one endpoint and IN_FLIGHT_MAX in all in flight at once,
so a slow or dead endpoint never holds up the others. It takes more as soon as attempts end, and the
attempts of one moment are recorded in one statement (group commit). At least once: a delivery is
marked delivered only after a 2xx, and a worker that dies mid-attempt leaves it due again when its
lease ends; every attempt of an event carries the same `webhook-id` (the event's id), so a receiver
drops duplicates.

2xx: delivered. 410 Gone: the endpoint is disabled and the delivery failed. Anything else (another
status, a timeout, a refused or broken connection): again after RETRY_SCHEDULE_S[attempts] (with +/- 20 %
jitter), until RETRY_FOR_S (3 days) after the event; then failed. An endpoint whose every attempt has
failed for FAILING_FOR_S (3 days) is disabled, with a `webhook_endpoint.disabled` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from prometheus_client import Counter as MetricCounter

from switch.common.batch import Batcher
from switch.common.metrics import FlushedCounts
from switch.frontends.http import events_api
from switch.frontends.stripe import events as stripe_events
from switch.frontends.webhooks import client, signing
from switch.store import webhooks as webhook_store

log = logging.getLogger(__name__)

RETRY_SCHEDULE_S = (5, 300, 1_800, 7_200, 18_000, 36_000, 36_000, 36_000, 36_000, 36_000)
RETRY_FOR_S = 3 * 86_400
FAILING_FOR_S = 3 * 86_400      # an endpoint whose every attempt failed this long is disabled, with an event
PER_ENDPOINT_MAX = 16
IN_FLIGHT_MAX = 64
BATCH_MAX = 100
LEASE_S = 30.0
POLL_S = 0.5
CLAIM_GAP_S = 0.01              # between claims while busy: a claim per attempt that ends would be a query each

_encoder = msgspec.json.Encoder()
attempts_metric = MetricCounter("switch_webhook_attempts_total", "Webhook delivery attempts: delivered (2xx), "
                                "retry (due again later) or failed (given up, 410 or disabled)", ["result"])
_attempts = FlushedCounts(attempts_metric, [("delivered",), ("retry",), ("failed",)])


def next_attempt(attempts: int, queued_at: datetime, now: datetime, schedule: Sequence[float] = RETRY_SCHEDULE_S,
                 retry_for_s: float = RETRY_FOR_S, jitter: Callable[[], float] = random.random) -> datetime | None:
    """When attempt `attempts + 1` (after `attempts` failures) is due, or None: give up."""
    delay = schedule[min(attempts, len(schedule) - 1)] * (0.8 + 0.4 * jitter())
    due = now + timedelta(seconds=delay)
    return None if due > queued_at + timedelta(seconds=retry_for_s) else due


# An attempt as recorded: delivery, HTTP status, error, latency, excerpt, the delivery's status, when next.
Attempted = tuple[int, int | None, str | None, int, str | None, str, datetime | None]


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, allow_loopback: bool = False,
                 schedule: Sequence[float] = RETRY_SCHEDULE_S, retry_for_s: float = RETRY_FOR_S,
                 failing_for_s: int = FAILING_FOR_S) -> None:
        self.pool = pool
        self.failing_for_s = failing_for_s
        self.allow_loopback = allow_loopback
        self.schedule = schedule
        self.retry_for_s = retry_for_s
        self.tasks: set[asyncio.Task[None]] = set()         # the attempts in flight
        self.per_endpoint: Counter[str] = Counter()          # ... of each endpoint
        self.freed = asyncio.Event()
        self.results: Batcher[Attempted, None] = Batcher(self._record_many, size_max=500, inflight_max=1)

    async def run(self) -> None:
        while True:
            try:
                started = await self.pass_once()
            except Exception as error:  # noqa: BLE001 - a failed pass is tried again
                log.warning("webhook delivery pass failed: %s", error.__class__.__name__)
                started = 0
            if not started and not self.tasks:
                await asyncio.sleep(POLL_S)                  # nothing due: look again soon
                continue
            if not started:
                self.freed.clear()                           # no room (in all, or per endpoint): until an
                with contextlib.suppress(TimeoutError):      # attempt ends, or POLL_S
                    await asyncio.wait_for(self.freed.wait(), POLL_S)
            await asyncio.sleep(CLAIM_GAP_S)                 # let more attempts end: one claim takes them all

    async def pass_once(self) -> int:
        """Start the due deliveries this worker has room for; how many it started."""
        room = IN_FLIGHT_MAX - len(self.tasks)
        if room <= 0:
            return 0
        full = {endpoint: PER_ENDPOINT_MAX - n for endpoint, n in self.per_endpoint.items() if n}
        rows = await webhook_store.claim_due(self.pool, min(room, BATCH_MAX), PER_ENDPOINT_MAX, LEASE_S, full)
        for row in rows:
            self.per_endpoint[row["endpoint_id"]] += 1
            task = asyncio.get_running_loop().create_task(self._deliver(row))
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._done, endpoint=row["endpoint_id"]))
        return len(rows)

    def _done(self, task: asyncio.Task[None], endpoint: str) -> None:
        self.tasks.discard(task)
        self.per_endpoint[endpoint] -= 1
        if not self.per_endpoint[endpoint]:
            del self.per_endpoint[endpoint]
        self.freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook attempt failed: %s", task.exception().__class__.__name__)

    async def _deliver(self, row: asyncpg.Record) -> None:
        if row["status"] != "enabled":
            await self._record(row, client.Answer(None, "the endpoint is disabled", 0, None), "failed", None)
            return
        message_id = events_api.event_id(row["event_id"])
        if row["format"] == "stripe":
            body = stripe_events.encode((await stripe_events.stripe_events(self.pool, [_event_row(row)]))[0])
            headers = [("stripe-signature", stripe_events.signature(row["secret"], int(time.time()), body,
                                                                    row["previous_secret"]))]
        else:
            body = await self._body(row)
            headers = signing.headers(row["secret"], message_id, int(time.time()), body, row["previous_secret"])
        answer = await client.post(row["url"], body, headers, self.allow_loopback)
        await self._settle(row, answer)

    async def _body(self, row: asyncpg.Record) -> bytes:
        event = (await events_api.event_objects(self.pool, [_event_row(row)]))[0]  # type: ignore[list-item]
        return _encoder.encode(event)

    async def _settle(self, row: asyncpg.Record, answer: client.Answer) -> None:
        if answer.status is not None and 200 <= answer.status < 300:
            await self._record(row, answer, "delivered", None)
            return
        if answer.status == 410:
            await webhook_store.disable_endpoint(self.pool, row["endpoint_id"], "the endpoint answered 410 Gone")
            await self._record(row, answer, "failed", None)
            return
        due = next_attempt(row["attempts"], row["queued_at"], datetime.now(UTC), self.schedule, self.retry_for_s)
        await self._record(row, answer, "pending" if due else "failed", due)

    async def _record(self, row: asyncpg.Record, answer: client.Answer, status: str, due: datetime | None) -> None:
        _attempts.add(("retry" if status == "pending" else status,))
        await self.results.submit((row["id"], answer.status, answer.error, answer.latency_ms, answer.excerpt,
                                   status, due))

    async def _record_many(self, attempts: list[Attempted]) -> list[None]:
        await webhook_store.record_attempts(self.pool, attempts)
        if any(attempt[5] != "delivered" for attempt in attempts):
            for endpoint in await webhook_store.disable_failing(self.pool, self.failing_for_s):
                log.warning("webhook endpoint %s disabled: every delivery failed for %d s", endpoint,
                            self.failing_for_s)
        return [None] * len(attempts)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _event_row(row: asyncpg.Record) -> dict[str, Any]:
    """The claimed delivery's event, as an `events` row reads."""
    return {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"], "data": row["data"],
            "created_at": row["event_created_at"]}
