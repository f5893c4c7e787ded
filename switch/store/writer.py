"""Group commit on the authorization hot path: the write-ahead and the finish of many payments, one
statement each per batch (see switch/common/batch.py).

Each row's idempotency row, payment, event and ledger entries are still written atomically, and a batch is
one round trip and one WAL flush instead of one per payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from switch.common import metrics
from switch.common.batch import Batcher
from switch.store import refunds as refund_store
from switch.store.events import PAYMENT_ANSWERED_TYPE
from switch.store.pool import POSTGRES, UNAVAILABLE, is_statement_error
from switch.store.records import FraudRecord, LedgerEntry, PaymentRecord

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


# The batch's rows come as one JSON array of objects (BeginRow), not 26 arrays: asyncpg encodes an array
# parameter element by element, and binding 26 of them cost the switch 127 µs of CPU for a 1-row batch and
# 275 for 8 rows against 95 and 191 as JSON (a microbench against a real Postgres; the server's time the
# same). Bytes travel as base64.
BEGIN_PAYMENTS = """
WITH input AS (
    SELECT id, merchant_id, amount, currency, capture_method, card_token, card_brand, card_last4, card_exp_month,
           card_exp_year, network, terminal_id, stan, rrn, transmitted_at, description, statement_descriptor,
           metadata, deadline_at, idempotency_key, decode(fingerprint, 'base64') AS fingerprint, created_at,
           card_fingerprint, fraud, review_status, decode(signals, 'base64') AS signals
    FROM json_to_recordset($1::json)
        AS t(id text, merchant_id text, amount bigint, currency text, capture_method text, card_token text,
             card_brand text, card_last4 text, card_exp_month smallint, card_exp_year smallint, network text,
             terminal_id text, stan text, rrn text, transmitted_at text, description text,
             statement_descriptor text, metadata jsonb, deadline_at timestamptz, idempotency_key text,
             fingerprint text, created_at timestamptz, card_fingerprint text, fraud jsonb, review_status text,
             signals text)
), idem AS (
    INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint,
                                  payment_id)
    SELECT merchant_id, idempotency_key, 'POST', '/v1/payments', fingerprint, id FROM input
    ON CONFLICT DO NOTHING RETURNING payment_id
), pay AS (
    INSERT INTO payments (id, merchant_id, status, amount, currency, capture_method, card_token, card_brand,
                          card_last4, card_exp_month, card_exp_year, network, terminal_id, stan, rrn,
                          transmitted_at, description, statement_descriptor, metadata, deadline_at, created_at,
                          card_fingerprint, fraud, review_status, signals, idempotency_key)
    SELECT id, merchant_id, 'processing', amount, currency, capture_method, card_token, card_brand, card_last4,
           card_exp_month, card_exp_year, network, terminal_id, stan, rrn, transmitted_at, description,
           statement_descriptor, metadata, deadline_at, created_at, card_fingerprint, fraud,
           review_status, signals, idempotency_key
    FROM input WHERE id IN (SELECT payment_id FROM idem)
    RETURNING id, amount
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, 'payment.created', NULL, 'processing', amount FROM pay
)
SELECT payment_id FROM idem"""

class BeginRow(msgspec.Struct):
    """One payment of a write-ahead batch, as BEGIN_PAYMENTS reads it (json_to_recordset: by field name).
    It repeats PaymentRecord's fields on purpose: sending the PaymentRecord itself (with the key, fingerprint
    and signals beside it, read with json_to_record) cost Postgres about 20 µs more a payment."""

    id: str
    merchant_id: str
    amount: int
    currency: str
    capture_method: str
    card_token: str
    card_brand: str
    card_last4: str
    card_exp_month: int
    card_exp_year: int
    network: str
    terminal_id: str
    stan: str
    rrn: str
    transmitted_at: str
    description: str | None
    statement_descriptor: str | None
    metadata: dict[str, str]
    deadline_at: datetime
    idempotency_key: str
    fingerprint: bytes
    created_at: datetime
    card_fingerprint: str | None
    fraud: FraudRecord | None
    review_status: str | None
    signals: bytes | None


# The status guard compares with a column of the input, not a literal: `p.status = 'processing'` lets the
# planner answer it from the payments_in_flight partial index, whose dead entries (every finished payment
# until vacuum reaches it) a bitmap scan re-reads on every batch: the statement got slower with every
# payment, 63 -> 440 µs a row within a minute of load. With the guard a join clause, each row is one
# primary-key lookup. MATERIALIZED keeps `from_status` opaque to the planner. `p.id = ANY ($1)` makes the
# lookup by key whatever the statistics: with the join clauses alone, the plan made on a new, empty table
# read all of payments_pkey, in a nested loop under the batch, until the table was next analyzed.
# Ledger entries come in as data (switch.ledger.postings): they are written for the payments the
# statement moved out of `processing`, and only for those.
# The key's merchant comes from the input, beside the key: taken from `pay` (another relation of the join),
# the plan made on a small table searched idempotency_keys_pkey by its second column alone and filtered the
# merchant after, which reads the whole index for every row. During a 60 s bench that update took 7-130 ms a
# batch, most of the statement's time.
FINISH_PAYMENTS = """
WITH input AS MATERIALIZED (
    SELECT *, 'processing'::text AS from_status
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[])
        AS t(payment_id, status, amount_capturable, amount_received, auth_code, response_code, decline_code,
             failure_message, event_type, idempotency_key, outcome, merchant_id)
), pay AS (
    UPDATE payments p SET status = i.status, amount_capturable = i.amount_capturable,
        amount_received = i.amount_received, auth_code = i.auth_code, response_code = i.response_code,
        decline_code = i.decline_code, failure_message = i.failure_message, updated_at = now(),
        review_status = CASE WHEN i.status = 'failed' THEN NULL ELSE p.review_status END
    FROM input i WHERE p.id = ANY ($1::text[]) AND p.id = i.payment_id AND p.status = i.from_status
    RETURNING p.id, p.merchant_id, p.review_status
), ledger AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT e.posting_id, e.payment_id, e.account, e.amount, e.currency
    FROM unnest($13::text[], $14::text[], $15::text[], $16::bigint[], $17::text[])
        AS e(posting_id, payment_id, account, amount, currency)
    JOIN pay ON pay.id = e.payment_id
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code)
    SELECT i.payment_id, i.event_type, 'processing', i.status, i.amount_received, i.response_code
    FROM input i JOIN pay ON pay.id = i.payment_id
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data)
    SELECT pay.merchant_id, t.type, i.payment_id, i.outcome
    FROM input i JOIN pay ON pay.id = i.payment_id,
         LATERAL (VALUES ({answered}), (CASE WHEN pay.review_status = 'open' THEN 'review.opened' END)) AS t(type)
    WHERE t.type IS NOT NULL
), idem AS (
    UPDATE idempotency_keys k SET outcome = i.outcome, finished_at = now()
    FROM input i JOIN pay ON pay.id = i.payment_id
    WHERE k.merchant_id = i.merchant_id AND k.idempotency_key = i.idempotency_key
)
SELECT id FROM pay""".replace("{answered}", PAYMENT_ANSWERED_TYPE.format(status="i.status"))
FINISH_PAYMENTS_ARGUMENTS = 17

# The keys, and one plan a statement: left to choose, Postgres planned the refunds' finish afresh on a third of
# its calls (590 µs a plan, 5 µs a payment). The plans it keeps are the generic ones tests/integration/
# test_write_plans.py checks.
_WRITER_SESSION_SET = "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan"
_WRITER_SESSION_RESET = "RESET enable_seqscan; RESET plan_cache_mode"
WRITER_RESET_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Finish:
    """A network answer for one payment: its new state, its event, its ledger entries (empty unless an
    approved sale) and the canonical outcome its idempotency key answers from now on."""

    payment: PaymentRecord
    event_type: str
    idempotency_key: str
    outcome: bytes
    entries: list[LedgerEntry]


class PaymentWriter:
    """Batched begin/finish writes for the authorization hot path (see switch/batch.py).

    Each batcher owns ``inflight_max`` connections taken from the pool once at start: a pooled
    acquire/release costs ~45 µs of CPU here, as much as a small statement, so the hot path skips it.
    """

    def __init__(self, pool: asyncpg.Pool, size_max: int = 512, inflight_max: int = 1) -> None:
        self.pool = pool
        self.inflight_max = inflight_max
        self.idle: list[asyncpg.Connection] = []
        self.sessions_wanted = 0
        self.sessions_busy = 0
        self._background: set[asyncio.Task[None]] = set()
        self.begin_batches: Batcher[tuple[PaymentRecord, str, bytes, bytes | None], bool] = Batcher(
            self._begin_many, size_max=size_max, inflight_max=inflight_max, splittable=is_statement_error,
            on_split=metrics.batch_splits.labels("begin").inc)
        self.finish_batches: Batcher[Finish, bool] = Batcher(
            self._finish_many, size_max=size_max, inflight_max=inflight_max, splittable=is_statement_error,
            on_split=metrics.batch_splits.labels("finish").inc)
        self.refund_batches: Batcher[refund_store.Finished, bool] = Batcher(
            self._finish_refunds_many, size_max=size_max, inflight_max=inflight_max, splittable=is_statement_error,
            on_split=metrics.batch_splits.labels("refund_finish").inc)

    async def start(self) -> None:
        # One per batch that may be in flight, per batcher (begin, finish, refund finish); always leave the
        # pool room for other work.
        self.sessions_wanted = min(3 * self.inflight_max, self.pool.get_max_size() - 4)
        for _ in range(self.sessions_wanted):
            self.idle.append(await self._session())

    async def close(self) -> None:
        for name, batcher in (("begin", self.begin_batches), ("finish", self.finish_batches),
                              ("refund finish", self.refund_batches)):
            log.info("%s writes: %d rows in %d statements (%d split to isolate a bad row)", name,
                     batcher.items, batcher.batches, batcher.splits)
        while self.idle:
            await self._give_back(self.idle.pop())

    async def _session(self) -> asyncpg.Connection:
        """A pooled connection set up for the batch statements.

        Their plans are prepared once, often while the tables are as small as they will ever be (a fresh
        database): the generic plan then scanned all of `payments` per batch, more each minute. On these
        sessions the planner must use the keys.
        """
        conn = await self.pool.acquire()
        try:
            await conn.execute(_WRITER_SESSION_SET)
        except BaseException:
            await self.pool.release(conn)
            raise
        conn.add_termination_listener(self._session_ended)
        return conn

    def _session_ended(self, conn: asyncpg.Connection) -> None:
        """The server closed a session (a restart, a failover): asyncpg has already handed it back to the
        pool, detached, so it must leave `idle` at once; a fresh one takes its place."""
        if any(held is conn for held in self.idle):
            self.idle = [held for held in self.idle if held is not conn]
            self._top_up()

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        """Return a session to the pool as the other pooled sessions are (our release hook resets nothing);
        one that cannot be reset is closed, and the pool opens a new one when needed. Raises nothing but a
        cancellation, and the session is back in the pool then too."""
        with contextlib.suppress(asyncpg.InterfaceError):     # already detached: nothing to remove
            conn.remove_termination_listener(self._session_ended)
        try:
            await conn.execute(_WRITER_SESSION_RESET, timeout=WRITER_RESET_TIMEOUT_S)
        except BaseException as error:  # any state we cannot reset (lost, mid-error, cancelled) is closed
            with contextlib.suppress(asyncpg.InterfaceError):   # a lost connection is already detached
                conn.terminate()
            if not isinstance(error, Exception):
                raise
        finally:
            await self.pool.release(conn)

    async def begin(self, payment: PaymentRecord, idempotency_key: str, fingerprint: bytes,
                    signals: bytes | None = None) -> bool:
        """Write-ahead (idempotency row + payment + event) before any network I/O; False, writing nothing,
        when the idempotency key already has a row (Redis lost the key). The row keeps the screen's verdict
        (`payment.fraud`, which its outcome carries too) and `signals`, the screen's signals as stored."""
        return await self.begin_batches.submit((payment, idempotency_key, fingerprint, signals))

    async def finish(self, item: Finish) -> bool:
        """False, writing nothing, when the payment already left `processing` (recovery got there first)."""
        return await self.finish_batches.submit(item)

    async def finish_refund(self, finished: refund_store.Finished) -> bool:
        """A refund's finish, group-committed with the refunds finishing with it; False, writing nothing,
        when it is no longer pending (recovery finished it)."""
        return await self.refund_batches.submit(finished)

    async def _fetch(self, query: str, args: Sequence[object], count: int) -> list[asyncpg.Record]:
        """The statement's rows, for a batch of `count` payments (`args` its parameters)."""
        if not self.idle:                           # not started (tests), or sessions were lost
            rows = await self._fetch_pooled(query, args, count)
            self._top_up()
            return rows
        conn = self.idle.pop()
        self.sessions_busy += 1
        try:
            rows = await conn.fetch(query, *args)
        except UNAVAILABLE as error:                # OSError: timeouts too
            POSTGRES.failed(error, refused=count)
            # Broken, or in an unknown state: never back into `idle`; a fresh session takes its place.
            await self._give_back(conn)
            await self._replace_session()
            raise
        except BaseException:
            self.idle.append(conn)
            raise
        finally:
            self.sessions_busy -= 1
        self.idle.append(conn)
        POSTGRES.succeeded()
        return rows

    async def _fetch_pooled(self, query: str, args: Sequence[object], count: int) -> list[asyncpg.Record]:
        """The statement on a pooled session set up as the writer's are, and reset after: a plan made
        without the settings would stay with that connection's prepared statement, and a writer session it
        later became would use it."""
        try:
            conn = await self._session()
            try:
                rows = await conn.fetch(query, *args)
            finally:
                await self._give_back(conn)
        except UNAVAILABLE as error:
            POSTGRES.failed(error, refused=count)
            raise
        POSTGRES.succeeded()
        return rows

    def _top_up(self) -> None:
        """Open, in the background, the writer sessions a closed connection or an outage took."""
        if self.sessions_wanted > len(self.idle) + self.sessions_busy and not self._background:
            task = asyncio.get_running_loop().create_task(self._refill())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refill(self) -> None:
        while len(self.idle) + self.sessions_busy < self.sessions_wanted:
            before = len(self.idle)
            await self._replace_session()
            if len(self.idle) == before:            # Postgres is away: the next success tries again
                return

    async def _replace_session(self) -> None:
        try:
            self.idle.append(await self._session())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass                                    # Postgres is away: later batches use pooled statements

    async def _begin_many(self, items: list[tuple[PaymentRecord, str, bytes, bytes | None]]) -> list[bool]:
        rows = [BeginRow(p.id, p.merchant_id, p.amount, p.currency, p.capture_method, p.card_token, p.card_brand,
                         p.card_last4, p.card_exp_month, p.card_exp_year, p.network, p.terminal_id, p.stan, p.rrn,
                         p.transmitted_at, p.description, p.statement_descriptor, p.metadata, p.deadline_at, key,
                         fingerprint, p.created_at, p.card_fingerprint, p.fraud, p.review_status, signals)
                for p, key, fingerprint, signals in items]
        batch = _json.encode(rows).decode()
        inserted = {record[0] for record in await self._fetch(BEGIN_PAYMENTS, [batch], len(rows))}
        return [p.id in inserted for p, _, _, _ in items]

    async def _finish_refunds_many(self, items: list[refund_store.Finished]) -> list[bool]:
        written = {record[0] for record in await self._fetch(
            refund_store.FINISH_MANY, refund_store.finish_arguments(items), len(items))}
        return [item.refund.id in written for item in items]

    async def _finish_many(self, items: list[Finish]) -> list[bool]:
        columns: list[list[object]] = [[] for _ in range(12)]
        ledger: list[list[object]] = [[] for _ in range(5)]
        for item in sorted(items, key=lambda i: i.payment.id):   # a fixed lock order across batches
            p = item.payment
            row = (p.id, p.status, p.amount_capturable, p.amount_received, p.auth_code, p.response_code,
                   p.decline_code, p.failure_message, item.event_type, item.idempotency_key, item.outcome,
                   p.merchant_id)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            for entry in item.entries:
                for entry_column, field in zip(ledger, (entry.posting_id, entry.payment_id, entry.account,
                                                        entry.amount, entry.currency), strict=True):
                    entry_column.append(field)
        updated = {record[0] for record in await self._fetch(FINISH_PAYMENTS, columns + ledger, len(items))}
        return [item.payment.id in updated for item in items]
