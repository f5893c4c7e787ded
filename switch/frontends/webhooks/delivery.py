"""Webhook delivery: first attempts come from a cursor per endpoint over the events (cursors.py: one
worker holds an endpoint at a time, through a lease), later attempts (retries, replays) from the queue in
Postgres (FOR UPDATE SKIP LOCKED, with a lease). At most PER_ENDPOINT_MAX attempts of one endpoint and
IN_FLIGHT_MAX in all are in flight at once per worker, so a slow or dead endpoint never holds up the others.
An endpoint that answers fast is read (and claimed) in depth: up to QUEUED_FAST_MAX waiting on this worker.
Attempts reuse kept-alive connections (client.Connections), and the attempts of one moment are recorded in
one statement (group commit). At least once: every attempt of an event carries the same `webhook-id` (the
event's id), so a receiver drops duplicates.

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

import asyncpg
import msgspec
from prometheus_client import Counter as MetricCounter

from switch.common.batch import Batcher
from switch.common.metrics import FlushedCounts
from switch.frontends.http import events_api
from switch.frontends.stripe import events as stripe_events
from switch.frontends.webhooks import client, cursors, signing
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
# Attempts are recorded at most this long after they end, many to a statement: a statement's fixed cost
# (parse, plan, commit) is most of a small one's.
RECORD_LINGER_S = 0.05
CURSOR_LEASE_S = 30.0          # an endpoint's cursor is held this long, renewed every CURSOR_LEASE_PASS_S
CURSOR_LEASE_PASS_S = 1.0
CURSOR_ENDPOINTS_MAX = 256     # endpoints whose cursors one worker holds
ADVANCE_INTERVAL_S = 0.25      # cursors moved are written at most this often

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


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, allow_loopback: bool = False,
                 schedule: Sequence[float] = RETRY_SCHEDULE_S, retry_for_s: float = RETRY_FOR_S,
                 failing_for_s: int = FAILING_FOR_S, owner: str | None = None) -> None:
        self.pool = pool
        self.failing_for_s = failing_for_s
        self.allow_loopback = allow_loopback
        self.schedule = schedule
        self.retry_for_s = retry_for_s
        self.owner = owner or cursors.new_owner()
        self.cursors: dict[str, cursors.CursorState] = {}     # the endpoints this worker holds
        self.advances: dict[str, cursors.Position] = {}       # cursors moved, not yet written
        self.leased_at = -CURSOR_LEASE_PASS_S
        self.advanced_at = 0.0
        self.tasks: set[asyncio.Task[None]] = set()         # the attempts sent or being recorded
        self.sending = 0                                     # sent, not yet answered
        self.per_endpoint: Counter[str] = Counter()          # ... of each endpoint
        self.queued: dict[str, deque[cursors.Job]] = {}      # waiting for room, per endpoint
        self.claimed_at = 0.0
        self.claimed_any = True
        self.latency_ms: dict[str, float] = {}               # recent attempts' mean (failures count slow)
        self.connections = client.Connections()
        self.freed = asyncio.Event()
        self.results: Batcher[webhook_store.Attempt, None] = Batcher(self._record_many, size_max=500,
                                                                      inflight_max=1, linger_s=RECORD_LINGER_S)

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
            await asyncio.sleep(CLAIM_GAP_S)                 # let more attempts end: one read takes them all

    async def pass_once(self) -> int:
        """Write the cursors moved, read past the cursors this worker holds and claim queued deliveries, as
        far as there is room; start what it can. How many attempts it took on."""
        await self._write_advances()
        if time.monotonic() - self.leased_at >= CURSOR_LEASE_PASS_S:
            await self._lease()
        waiting = sum(len(jobs) for jobs in self.queued.values())
        if self.sending >= IN_FLIGHT_MAX or CLAIMED_MAX - len(self.tasks) - waiting <= 0:
            return 0
        jobs = await self._read_cursors()
        jobs += await self._claim_queued(waiting)
        await self._bodies(jobs)
        for job in jobs:
            self.queued.setdefault(job.endpoint["endpoint_id"], deque()).append(job)
        self._start_queued()
        return len(jobs)

    async def _lease(self) -> None:
        """Hold (again) the endpoints with events past their cursors, taking those nobody holds; let go of
        the others once their batch is done."""
        self.leased_at = time.monotonic()
        rows = await webhook_store.lease_cursors(self.pool, self.owner, CURSOR_ENDPOINTS_MAX, CURSOR_LEASE_S)
        for state in self.cursors.values():
            state.held = False
        for row in rows:
            held = self.cursors.get(row["endpoint_id"])
            if held is None or held.broken:
                self.cursors[row["endpoint_id"]] = cursors.CursorState(row)
            else:
                held.endpoint, held.held = row, True
        for endpoint, state in list(self.cursors.items()):
            if not state.held and state.idle:
                del self.cursors[endpoint]
                if endpoint not in self.per_endpoint and endpoint not in self.queued:
                    self.latency_ms.pop(endpoint, None)

    async def _read_cursors(self) -> list[cursors.Job]:
        """The next batch past each cursor held that has room for one and nothing left waiting to start (one
        statement for all)."""
        now = time.monotonic()
        ready = [state for endpoint, state in self.cursors.items()
                 if state.wants_more(now) and not self.queued.get(endpoint)]
        if not ready:
            return []
        sizes = {state.endpoint["endpoint_id"]: self._claim_max(state.endpoint["endpoint_id"]) for state in ready}
        rows = await webhook_store.fetch_past_cursors(
            self.pool, [(state.endpoint["endpoint_id"], *state.read_to, sizes[state.endpoint["endpoint_id"]])
                        for state in ready])
        by_endpoint: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_endpoint.setdefault(row["endpoint_id"], []).append(row)
        jobs: list[cursors.Job] = []
        for state in ready:
            endpoint = state.endpoint["endpoint_id"]
            if not (mine := by_endpoint.get(endpoint)):
                continue                                     # disabled or deleted since the lease
            events = [row for row in mine if row["event_id"] is not None]
            batch, moved = state.start_batch(events, sizes[endpoint], mine[0]["horizon"], now)
            if moved is not None:
                self.advances[endpoint] = moved
            if batch is not None:
                jobs += cursors.cursor_jobs(state, batch, events)
        return jobs

    async def _claim_queued(self, waiting: int) -> list[cursors.Job]:
        """Due retries and replays, at most once per CLAIM_INTERVAL_MAX_S unless the last claim found some."""
        if not self.claimed_any and time.monotonic() - self.claimed_at < CLAIM_INTERVAL_MAX_S:
            return []
        room = CLAIMED_MAX - len(self.tasks) - waiting
        self.claimed_at = time.monotonic()
        busy = set(self.per_endpoint) | set(self.queued)
        left = {endpoint: self._claim_max(endpoint) - self.per_endpoint[endpoint] - len(self.queued.get(endpoint, ()))
                for endpoint in busy}
        rows = await webhook_store.claim_due(self.pool, min(room, BATCH_MAX), PER_ENDPOINT_MAX, LEASE_S,
                                             {endpoint: max(0, free) for endpoint, free in left.items()})
        self.claimed_any = bool(rows)
        return [cursors.queued_job(row) for row in rows]

    async def _write_advances(self) -> None:
        """The cursors moved, written at most every ADVANCE_INTERVAL_S: what a worker that dies had not
        written yet is sent again by the next holder."""
        if not self.advances or time.monotonic() - self.advanced_at < ADVANCE_INTERVAL_S:
            return
        self.advanced_at = time.monotonic()
        moved, self.advances = self.advances, {}
        try:
            await webhook_store.advance_cursors(self.pool, self.owner, [(e, *p) for e, p in moved.items()])
        except Exception:
            for endpoint, position in moved.items():        # written with the next pass
                self.advances.setdefault(endpoint, position)
            raise

    def _claim_max(self, endpoint: str) -> int:
        fast = self.latency_ms.get(endpoint, FAST_ATTEMPT_MS) < FAST_ATTEMPT_MS
        return QUEUED_FAST_MAX if fast else PER_ENDPOINT_MAX

    def _start_queued(self) -> None:
        """Start waiting deliveries while there is room, in all and per endpoint."""
        for endpoint in list(self.queued):
            waiting = self.queued[endpoint]
            while waiting and self.per_endpoint[endpoint] < PER_ENDPOINT_MAX and self.sending < IN_FLIGHT_MAX:
                self._start(waiting.popleft())
            if not waiting:
                del self.queued[endpoint]

    def _start(self, job: cursors.Job) -> None:
        self.per_endpoint[job.endpoint["endpoint_id"]] += 1
        self.sending += 1
        job.sending = True
        task = asyncio.get_running_loop().create_task(self._deliver(job))
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._done, job=job))

    def _answered(self, job: cursors.Job) -> None:
        """The attempt has its answer (or ended): its room in flight is free while it is recorded."""
        if not job.sending:
            return
        job.sending = False
        endpoint = job.endpoint["endpoint_id"]
        self.sending -= 1
        self.per_endpoint[endpoint] -= 1
        if not self.per_endpoint[endpoint]:
            del self.per_endpoint[endpoint]
            if endpoint not in self.queued and endpoint not in self.cursors:
                self.latency_ms.pop(endpoint, None)          # bounded by the endpoints being delivered to
        self._start_queued()
        self.freed.set()

    def _done(self, task: asyncio.Task[None], job: cursors.Job) -> None:
        self.tasks.discard(task)
        self._answered(job)
        failed = task.cancelled() or task.exception() is not None
        if job.cursor is not None and job.batch is not None:
            self._settled(job.cursor, job.batch, failed)
        self.freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook attempt failed: %s", task.exception().__class__.__name__)

    def _settled(self, state: cursors.CursorState, batch: cursors.Batch, lost: bool) -> None:
        """A first attempt recorded (or lost: the cursor is read again as written, once its batches end)."""
        if lost:
            state.broken = True
        if (moved := state.settled(batch)) is not None and not state.broken:
            self.advances[state.endpoint["endpoint_id"]] = moved
        if state.broken and state.idle and self.cursors.get(state.endpoint["endpoint_id"]) is state:
            del self.cursors[state.endpoint["endpoint_id"]]
            self.leased_at = -CURSOR_LEASE_PASS_S           # held again (from the cursor written) at once

    async def _bodies(self, jobs: list[cursors.Job]) -> None:
        """Each job's body, rendered for the whole pass at once: an event whose object is read when it is
        rendered (a payment's) costs one query per pass, not one per delivery."""
        standard = [job for job in jobs if job.endpoint["format"] != "stripe"]
        stripe = [job for job in jobs if job.endpoint["format"] == "stripe"]
        if standard:
            objects = await events_api.event_objects_or_none(self.pool, [job.event for job in standard])
            for job, rendered in zip(standard, objects, strict=True):
                job.body = None if rendered is None else _encoder.encode(rendered)
        if stripe:
            await self._stripe_bodies(stripe)

    async def _stripe_bodies(self, jobs: list[cursors.Job]) -> None:
        """Stripe's events for these jobs; when the batch cannot be rendered, each on its own, so only the
        bad one is left without a body."""
        try:
            shown = {event.id: event for event in
                     await stripe_events.stripe_events(self.pool, [job.event for job in jobs])}
        except Exception:  # noqa: BLE001 - one bad event: find it
            if len(jobs) > 1:
                for job in jobs:
                    await self._stripe_bodies([job])
            return
        for job in jobs:
            if (event := shown.get(events_api.event_id(job.event["id"]))) is not None:
                job.body = stripe_events.encode(event)

    async def _deliver(self, job: cursors.Job) -> None:
        endpoint, body = job.endpoint, job.body
        if endpoint["status"] != "enabled" or body is None:
            why = ("the endpoint is disabled" if endpoint["status"] != "enabled" else "the event has no Stripe type"
                   if endpoint["format"] == "stripe" else "the event cannot be rendered")
            await self._record(job, client.Answer(None, why, 0, None), "failed", None)
            return
        message_id = events_api.event_id(job.event["id"])
        if endpoint["format"] == "stripe":
            headers = [("stripe-signature", stripe_events.signature(endpoint["secret"], int(time.time()), body,
                                                                    endpoint["previous_secret"]))]
        else:
            headers = signing.headers(endpoint["secret"], message_id, int(time.time()), body,
                                      endpoint["previous_secret"])
        answer = await client.post(endpoint["url"], body, headers, self.allow_loopback, connections=self.connections)
        self._observe(endpoint["endpoint_id"], answer)
        self._answered(job)
        await self._settle(job, answer)

    def _observe(self, endpoint: str, answer: client.Answer) -> None:
        delivered = answer.status is not None and 200 <= answer.status < 300
        latency_ms = answer.latency_ms if delivered else client.DELIVERY_TIMEOUT_S * 1000
        self.latency_ms[endpoint] = 0.8 * self.latency_ms.get(endpoint, latency_ms) + 0.2 * latency_ms

    async def _settle(self, job: cursors.Job, answer: client.Answer) -> None:
        if answer.status is not None and 200 <= answer.status < 300:
            await self._record(job, answer, "delivered", None)
            return
        if answer.status == 410:
            await webhook_store.disable_endpoint(self.pool, job.endpoint["endpoint_id"],
                                                 "the endpoint answered 410 Gone")
            await self._record(job, answer, "failed", None)
            return
        due = next_attempt(job.attempts, job.queued_at, datetime.now(UTC), self.schedule, self.retry_for_s)
        await self._record(job, answer, "pending" if due else "failed", due)

    async def _record(self, job: cursors.Job, answer: client.Answer, status: str, due: datetime | None) -> None:
        _attempts.add(("retry" if status == "pending" else status,))
        await self.results.submit((job.event["id"], job.endpoint["endpoint_id"], answer.status, answer.error,
                                   answer.latency_ms, answer.excerpt, status, due, job.first))

    async def _record_many(self, attempts: list[webhook_store.Attempt]) -> list[None]:
        await webhook_store.record_attempts(self.pool, attempts)
        if any(attempt[6] != "delivered" for attempt in attempts):
            for endpoint in await webhook_store.disable_failing(self.pool, self.failing_for_s):
                log.warning("webhook endpoint %s disabled: every delivery failed for %d s", endpoint,
                            self.failing_for_s)
        return [None] * len(attempts)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.connections.close()
        self.advanced_at = -ADVANCE_INTERVAL_S
        with contextlib.suppress(Exception):      # best effort: the next holder sends the rest again
            await self._write_advances()
