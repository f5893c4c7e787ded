"""Webhook delivery: every worker takes due deliveries from the queue in Postgres (FOR UPDATE SKIP LOCKED,
with a lease), at most PER_ENDPOINT_MAX of one endpoint and IN_FLIGHT_MAX in all in flight at once,
so a slow or dead endpoint never holds up the others. An endpoint that answers fast is claimed for in depth
(up to QUEUED_FAST_MAX waiting on this worker), so a backlog drains in few claims; attempts reuse kept-alive
connections (client.Connections). It takes more as soon as attempts end, and the attempts of one moment are
recorded in one statement (group commit). At least once: a delivery is
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
from collections import Counter, deque
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
PER_ENDPOINT_MAX = 16          # attempts in flight to one endpoint, per worker
IN_FLIGHT_MAX = 64             # attempts in flight, per worker
# Claimed and waiting on this worker, per endpoint: an endpoint that answers fast gets deep claims (one claim
# feeds it for a while: a claim ranks every due delivery, so its cost grows with the backlog), a slow or
# failing one (or one not seen yet) no more than it has room in flight for, so it never holds rows that
# another worker could deliver.
QUEUED_FAST_MAX = 256
FAST_ATTEMPT_MS = 100.0        # an endpoint whose recent attempts average under this, all 2xx, is fast
CLAIMED_MAX = 1024             # claimed in all (in flight and waiting), per worker
BATCH_MAX = 500
LEASE_S = 30.0                 # covers a deep claim's wait: QUEUED_FAST_MAX at PER_ENDPOINT_MAX per 100 ms
POLL_S = 0.5
CLAIM_GAP_S = 0.01              # between claims while busy: a claim per attempt that ends would be a query each
# While IN_FLIGHT_MAX or more wait on this worker, claim again only after this long: a claim costs the same
# for 20 rows as for 500, so it is made when the waiting rows run low (or for other endpoints' new rows).
CLAIM_INTERVAL_MAX_S = 0.25

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


# A claimed delivery and its body (None: nothing to send it as).
Claimed = tuple[asyncpg.Record, bytes | None]
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
        self.queued: dict[str, deque[Claimed]] = {}          # claimed, waiting for room, per endpoint
        self.claimed_at = 0.0
        self.latency_ms: dict[str, float] = {}               # recent attempts' mean (failures count slow)
        self.connections = client.Connections()
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
        """Claim the due deliveries this worker has room for and start what it can; how many it claimed."""
        waiting = sum(len(rows) for rows in self.queued.values())
        room = CLAIMED_MAX - len(self.tasks) - waiting
        stocked = waiting >= IN_FLIGHT_MAX and time.monotonic() - self.claimed_at < CLAIM_INTERVAL_MAX_S
        if room <= 0 or len(self.tasks) >= IN_FLIGHT_MAX or stocked:
            return 0
        self.claimed_at = time.monotonic()
        busy = set(self.per_endpoint) | set(self.queued)
        left = {endpoint: self._claim_max(endpoint) - self.per_endpoint[endpoint] - len(self.queued.get(endpoint, ()))
                for endpoint in busy}
        rows = await webhook_store.claim_due(self.pool, min(room, BATCH_MAX), PER_ENDPOINT_MAX, LEASE_S,
                                             {endpoint: max(0, free) for endpoint, free in left.items()})
        bodies = await self._bodies(rows) if rows else {}
        for row in rows:
            self.queued.setdefault(row["endpoint_id"], deque()).append((row, bodies.get(row["id"])))
        self._start_queued()
        return len(rows)

    def _claim_max(self, endpoint: str) -> int:
        fast = self.latency_ms.get(endpoint, FAST_ATTEMPT_MS) < FAST_ATTEMPT_MS
        return QUEUED_FAST_MAX if fast else PER_ENDPOINT_MAX

    def _start_queued(self) -> None:
        """Start waiting deliveries while there is room, in all and per endpoint."""
        for endpoint in list(self.queued):
            waiting = self.queued[endpoint]
            while waiting and self.per_endpoint[endpoint] < PER_ENDPOINT_MAX and len(self.tasks) < IN_FLIGHT_MAX:
                self._start(waiting.popleft())
            if not waiting:
                del self.queued[endpoint]

    def _start(self, claimed: Claimed) -> None:
        row, body = claimed
        self.per_endpoint[row["endpoint_id"]] += 1
        task = asyncio.get_running_loop().create_task(self._deliver(row, body))
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._done, endpoint=row["endpoint_id"]))

    def _done(self, task: asyncio.Task[None], endpoint: str) -> None:
        self.tasks.discard(task)
        self.per_endpoint[endpoint] -= 1
        if not self.per_endpoint[endpoint]:
            del self.per_endpoint[endpoint]
            if endpoint not in self.queued:
                self.latency_ms.pop(endpoint, None)          # bounded by the endpoints being delivered to
        self._start_queued()
        self.freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook attempt failed: %s", task.exception().__class__.__name__)

    async def _bodies(self, rows: list[asyncpg.Record]) -> dict[int, bytes]:
        """Each claimed delivery's body, rendered for the whole claim at once: an event whose object is read
        when it is rendered (a payment's) costs one query per claim, not one per delivery."""
        standard = [row for row in rows if row["format"] != "stripe"]
        stripe = [row for row in rows if row["format"] == "stripe"]
        bodies = {}
        if standard:
            objects = await events_api.event_objects(self.pool, [_event_row(row) for row in standard])  # type: ignore[misc]
            bodies = {row["id"]: _encoder.encode(event) for row, event in zip(standard, objects, strict=True)}
        if stripe:
            shown = {event.id: event for event in
                     await stripe_events.stripe_events(self.pool, [_event_row(row) for row in stripe])}
            for row in stripe:
                if (event := shown.get(events_api.event_id(row["event_id"]))) is not None:
                    bodies[row["id"]] = stripe_events.encode(event)
        return bodies

    async def _deliver(self, row: asyncpg.Record, body: bytes | None) -> None:
        if row["status"] != "enabled" or body is None:
            why = "the endpoint is disabled" if row["status"] != "enabled" else "the event has no Stripe type"
            await self._record(row, client.Answer(None, why, 0, None), "failed", None)
            return
        message_id = events_api.event_id(row["event_id"])
        if row["format"] == "stripe":
            headers = [("stripe-signature", stripe_events.signature(row["secret"], int(time.time()), body,
                                                                    row["previous_secret"]))]
        else:
            headers = signing.headers(row["secret"], message_id, int(time.time()), body, row["previous_secret"])
        answer = await client.post(row["url"], body, headers, self.allow_loopback, connections=self.connections)
        self._observe(row["endpoint_id"], answer)
        await self._settle(row, answer)

    def _observe(self, endpoint: str, answer: client.Answer) -> None:
        delivered = answer.status is not None and 200 <= answer.status < 300
        latency_ms = answer.latency_ms if delivered else client.DELIVERY_TIMEOUT_S * 1000
        self.latency_ms[endpoint] = 0.8 * self.latency_ms.get(endpoint, latency_ms) + 0.2 * latency_ms

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
        self.connections.close()


def _event_row(row: asyncpg.Record) -> dict[str, Any]:
    """The claimed delivery's event, as an `events` row reads."""
    return {"id": row["event_id"], "type": row["type"], "object_id": row["object_id"], "data": row["data"],
            "created_at": row["event_created_at"]}
