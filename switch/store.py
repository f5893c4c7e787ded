"""Postgres access for payments, refunds, idempotency rows, the network outbox and the ledger.

Each write is one statement (a CTE chain) or one short transaction: a payment step costs one round trip,
and a crash between statements can never leave half of a step written.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from switch import models
from switch.fees import PLATFORM_FEES_ACCOUNT, fee_sql
from switch.states import Event, Status

log = logging.getLogger(__name__)

PAYMENT_COLUMNS = """id, merchant_id, status, amount, currency, capture_method, amount_capturable, amount_received,
    amount_refunded, card_token, card_brand, card_last4, card_exp_month, card_exp_year, network, terminal_id,
    stan, rrn, transmitted_at, auth_code, response_code, decline_code, failure_message, description,
    statement_descriptor, metadata, deadline_at, created_at"""


@dataclass(slots=True)
class NewPayment:
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
    created_at: datetime
    deadline_at: datetime


@dataclass(slots=True)
class IdempotencyRow:
    fingerprint: bytes
    response_status: int | None
    response_body: bytes | None


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: we keep no session state (no SET, LISTEN, advisory locks or temp tables), so the
    reset query asyncpg would otherwise send on every release is a wasted round trip. Open transactions are
    still rolled back by asyncpg before this hook runs. (PaymentWriter's sessions undo their SET before
    they come back: PaymentWriter._give_back.)"""


async def create_pool(url: str, size_max: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=min(2, size_max), max_size=size_max, init=init_connection,
                                     reset=_keep_session, command_timeout=10)
    assert pool is not None
    return pool


# ----- idempotency -------------------------------------------------------------------------------------

_INSERT_IDEMPOTENCY = """
INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1"""


async def claim_key(conn: asyncpg.Connection, merchant_id: str, key: str, method: str, path: str,
                    fingerprint: bytes) -> bool:
    """Insert the write-ahead idempotency row; False when (merchant, key) already has one."""
    return await conn.fetchval(_INSERT_IDEMPOTENCY, merchant_id, key, method, path, fingerprint) is not None


async def load_key(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, key: str) -> IdempotencyRow | None:
    row = await conn.fetchrow("SELECT fingerprint, response_status, response_body FROM idempotency_keys "
                              "WHERE merchant_id = $1 AND idempotency_key = $2", merchant_id, key)
    return IdempotencyRow(row[0], row[1], row[2]) if row else None


async def finish_key(conn: asyncpg.Connection, merchant_id: str, key: str, status: int, body: bytes,
                     payment_id: str | None) -> None:
    await conn.execute("UPDATE idempotency_keys SET response_status = $3, response_body = $4, payment_id = $5, "
                       "finished_at = now() WHERE merchant_id = $1 AND idempotency_key = $2",
                       merchant_id, key, status, body, payment_id)


async def delete_expired_keys(pool: asyncpg.Pool, retention_s: int, batch_max: int = 5000) -> int:
    """The 24 h reaper: remove finished keys older than the retention, in bounded batches."""
    status = await pool.execute(
        "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY (SELECT ctid FROM idempotency_keys "
        "WHERE created_at < now() - make_interval(secs => $1) AND response_status IS NOT NULL LIMIT $2))",
        float(retention_s), batch_max)
    return int(status.split()[-1])


# ----- payments ----------------------------------------------------------------------------------------

_FINISH_PAYMENT = """
WITH pay AS (
    UPDATE payments SET status = $2, amount_capturable = $3, amount_received = $4, auth_code = $5,
        response_code = $6, decline_code = $7, failure_message = $8, updated_at = now()
    WHERE id = $1 AND status = 'processing'
    RETURNING id, merchant_id
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code)
    SELECT id, $9, 'processing', $2, $4, $6 FROM pay
), idem AS (
    UPDATE idempotency_keys SET response_status = $11, response_body = $12, finished_at = now()
    WHERE merchant_id = (SELECT merchant_id FROM pay) AND idempotency_key = $10
)
SELECT count(*) FROM pay"""


@dataclass(slots=True)
class Outcome:
    status: str
    amount_capturable: int
    amount_received: int
    auth_code: str | None
    response_code: str | None
    decline_code: str | None
    failure_message: str | None
    event_type: str


async def finish_payment(conn: asyncpg.Connection | asyncpg.Pool, payment_id: str, outcome: Outcome,
                         idempotency_key: str, response_status: int, response_body: bytes) -> bool:
    """Record the network's answer, its event and the merchant's response in one statement.

    Returns False if the payment had already left `processing` (e.g. recovery got there first).
    """
    o = outcome
    count = await conn.fetchval(_FINISH_PAYMENT, payment_id, o.status, o.amount_capturable, o.amount_received,
                                o.auth_code, o.response_code, o.decline_code, o.failure_message, o.event_type,
                                idempotency_key, response_status, response_body)
    return bool(count)


async def get_payment(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, payment_id: str,
                      *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND merchant_id = $2{lock}",
                               payment_id, merchant_id)


async def list_payments(pool: asyncpg.Pool, merchant_id: str, limit: int, starting_after: str | None,
                        ending_before: str | None, created_gte: datetime | None,
                        created_lte: datetime | None) -> tuple[list[asyncpg.Record], bool]:
    """Newest first, keyset pagination on (created_at, id); returns (rows, has_more)."""
    conditions = ["merchant_id = $1"]
    args: list[object] = [merchant_id]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if created_gte:
        conditions.append(f"created_at >= {arg(created_gte)}")
    if created_lte:
        conditions.append(f"created_at <= {arg(created_lte)}")
    order = "DESC"
    if starting_after:
        conditions.append(f"(created_at, id) < (SELECT created_at, id FROM payments WHERE id = {arg(starting_after)} "
                          f"AND merchant_id = $1)")
    elif ending_before:
        conditions.append(f"(created_at, id) > (SELECT created_at, id FROM payments WHERE id = {arg(ending_before)} "
                          f"AND merchant_id = $1)")
        order = "ASC"
    query = (f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE {' AND '.join(conditions)} "
             f"ORDER BY created_at {order}, id {order} LIMIT {arg(limit + 1)}")
    rows = await pool.fetch(query, *args)
    has_more = len(rows) > limit
    rows = rows[:limit]
    if order == "ASC":
        rows.reverse()
    return rows, has_more


def payment_object(row: Mapping[str, Any]) -> models.Payment:
    return models.Payment(
        id=row["id"], status=row["status"], amount=row["amount"], amount_capturable=row["amount_capturable"],
        amount_received=row["amount_received"], amount_refunded=row["amount_refunded"], currency=row["currency"],
        capture_method=row["capture_method"],
        payment_method=models.PaymentMethodDetails(token=row["card_token"], card=models.CardDetails(
            brand=row["card_brand"], last4=row["card_last4"], exp_month=row["card_exp_month"],
            exp_year=row["card_exp_year"])),
        network=row["network"], authorization_code=row["auth_code"], network_response_code=row["response_code"],
        decline_code=row["decline_code"], failure_message=row["failure_message"], description=row["description"],
        statement_descriptor=row["statement_descriptor"], metadata=row["metadata"] or {},
        created=int(row["created_at"].timestamp()),
    )


async def add_event(conn: asyncpg.Connection, payment_id: str, type_: str, from_status: str | None,
                    to_status: str, amount: int | None, response_code: str | None = None) -> None:
    await conn.execute("INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code) "
                       "VALUES ($1, $2, $3, $4, $5, $6)", payment_id, type_, from_status, to_status, amount,
                       response_code)


async def release_refund(conn: asyncpg.Connection, payment_id: str, amount: int,
                         response_code: str | None = None) -> None:
    """A refund that failed (declined, not answered, or recovered) gives its reserved amount back."""
    await conn.execute("UPDATE payments SET amount_refunded = amount_refunded - $2, updated_at = now() WHERE id = $1",
                       payment_id, amount)
    await add_event(conn, payment_id, Event.REFUND_FAILED, Status.SUCCEEDED, Status.SUCCEEDED, amount, response_code)


# ----- outbox and ledger -------------------------------------------------------------------------------

@dataclass(slots=True)
class OutboxItem:
    """A message the network must acknowledge: a capture advice or a reversal of an earlier message."""

    payment_id: str
    kind: str                 # capture_advice | reversal
    network: str
    original_mti: str         # 0100 (authorization), 0200 (sale or refund)
    processing_code: str
    amount: int               # what the network should end up with: captured amount, 0 for a full reversal
    original_amount: int
    stan: str
    rrn: str
    transmitted_at: str
    refund_id: str | None = None


async def enqueue_outbox(conn: asyncpg.Connection | asyncpg.Pool, item: OutboxItem) -> int:
    i = item
    return int(await conn.fetchval(
        "INSERT INTO network_outbox (payment_id, kind, refund_id, network, original_mti, processing_code, amount, "
        "original_amount, stan, rrn, transmitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "RETURNING id", i.payment_id, i.kind, i.refund_id, i.network, i.original_mti, i.processing_code, i.amount,
        i.original_amount, i.stan, i.rrn, i.transmitted_at))


async def post_ledger(conn: asyncpg.Connection, posting_id: str, payment_id: str, currency: str,
                      entries: list[tuple[str, int]]) -> None:
    """One posting: its entries must sum to zero (double entry); a programming error otherwise."""
    assert sum(amount for _, amount in entries) == 0, "ledger posting does not balance"
    await conn.executemany(
        "INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency) VALUES ($1, $2, $3, $4, $5)",
        [(posting_id, payment_id, account, amount, currency) for account, amount in entries])


async def unbalanced_postings(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT posting_id, currency, sum(amount) AS total FROM ledger_entries "
                            "GROUP BY posting_id, currency HAVING sum(amount) <> 0 LIMIT 100")


# ----- batched hot path (group commit) -------------------------------------------------------------------
# The write-ahead and finish_payment's write, for many payments in one statement: each row's
# idempotency row, payment and event are still written atomically, and a batch is one round trip and one
# WAL flush instead of one per payment.

_BEGIN_PAYMENTS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::smallint[], $10::smallint[], $11::text[], $12::text[], $13::text[],
                         $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::timestamptz[],
                         $20::text[], $21::bytea[], $22::timestamptz[])
        AS t(id, merchant_id, amount, currency, capture_method, card_token, card_brand, card_last4, card_exp_month,
             card_exp_year, network, terminal_id, stan, rrn, transmitted_at, description, statement_descriptor,
             metadata, deadline_at, idempotency_key, fingerprint, created_at)
), idem AS (
    INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint,
                                  payment_id)
    SELECT merchant_id, idempotency_key, 'POST', '/v1/payments', fingerprint, id FROM input
    ON CONFLICT DO NOTHING RETURNING payment_id
), pay AS (
    INSERT INTO payments (id, merchant_id, status, amount, currency, capture_method, card_token, card_brand,
                          card_last4, card_exp_month, card_exp_year, network, terminal_id, stan, rrn,
                          transmitted_at, description, statement_descriptor, metadata, deadline_at, created_at)
    SELECT id, merchant_id, 'processing', amount, currency, capture_method, card_token, card_brand, card_last4,
           card_exp_month, card_exp_year, network, terminal_id, stan, rrn, transmitted_at, description,
           statement_descriptor, metadata::jsonb, deadline_at, created_at
    FROM input WHERE id IN (SELECT payment_id FROM idem)
    RETURNING id, amount
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, 'payment.created', NULL, 'processing', amount FROM pay
)
SELECT payment_id FROM idem"""

# The status guard compares with a column of the input, not a literal: `p.status = 'processing'` lets the
# planner answer it from the payments_in_flight partial index, whose dead entries (every finished payment
# until vacuum reaches it) a bitmap scan re-reads on every batch: the statement got slower with every
# payment, 63 -> 440 µs a row within a minute of load. With the guard a join clause, each row is one
# primary-key lookup. MATERIALIZED keeps `from_status` opaque to the planner.
_FINISH_PAYMENTS = f"""
WITH input AS MATERIALIZED (
    SELECT *, 'processing'::text AS from_status
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::smallint[], $12::bytea[])
        AS t(payment_id, status, amount_capturable, amount_received, auth_code, response_code, decline_code,
             failure_message, event_type, idempotency_key, response_status, response_body)
), pay AS (
    UPDATE payments p SET status = i.status, amount_capturable = i.amount_capturable,
        amount_received = i.amount_received, auth_code = i.auth_code, response_code = i.response_code,
        decline_code = i.decline_code, failure_message = i.failure_message, updated_at = now()
    FROM input i WHERE p.id = i.payment_id AND p.status = i.from_status
    RETURNING p.id, p.merchant_id, p.status, p.network, p.currency, p.amount_received
), ledger AS (
    -- An approved sale is captured at once: its capture and fee postings (switch/ledger.py), as at capture.
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT e.posting_id || pay.id, pay.id, e.account, e.amount, pay.currency
    FROM pay CROSS JOIN LATERAL (VALUES
        ('capture:', 'network:' || pay.network || ':receivable', pay.amount_received),
        ('capture:', 'merchant:' || pay.merchant_id || ':payable', -pay.amount_received),
        ('fee:', 'merchant:' || pay.merchant_id || ':payable', {fee_sql("pay.amount_received")}),
        ('fee:', '{PLATFORM_FEES_ACCOUNT}', -{fee_sql("pay.amount_received")})) AS e(posting_id, account, amount)
    WHERE pay.status = 'succeeded'
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code)
    SELECT i.payment_id, i.event_type, 'processing', i.status, i.amount_received, i.response_code
    FROM input i JOIN pay ON pay.id = i.payment_id
), idem AS (
    UPDATE idempotency_keys k SET response_status = i.response_status, response_body = i.response_body,
        finished_at = now()
    FROM input i JOIN pay ON pay.id = i.payment_id
    WHERE k.merchant_id = pay.merchant_id AND k.idempotency_key = i.idempotency_key
)
SELECT id FROM pay"""


_WRITER_SESSION_SET = "SET enable_seqscan = off"
_WRITER_SESSION_RESET = "RESET enable_seqscan"
WRITER_RESET_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Finish:
    payment_id: str
    outcome: Outcome
    idempotency_key: str
    response_status: int
    response_body: bytes


class PaymentWriter:
    """Batched begin/finish writes for the authorization hot path (see switch/batch.py).

    Each batcher owns ``inflight_max`` connections taken from the pool once at start: a pooled
    acquire/release costs ~45 µs of CPU here, as much as a small statement, so the hot path skips it.
    """

    def __init__(self, pool: asyncpg.Pool, size_max: int = 512, inflight_max: int = 1) -> None:
        from switch.common.batch import Batcher

        self.pool = pool
        self.inflight_max = inflight_max
        self.idle: list[asyncpg.Connection] = []
        self.begin_batches: Batcher[tuple[NewPayment, str, bytes], bool] = Batcher(
            self._begin_many, size_max=size_max, inflight_max=inflight_max)
        self.finish_batches: Batcher[Finish, bool] = Batcher(
            self._finish_many, size_max=size_max, inflight_max=inflight_max)

    async def start(self) -> None:
        # One per batch that may be in flight, per batcher; always leave the pool room for other work.
        for _ in range(min(2 * self.inflight_max, self.pool.get_max_size() - 4)):
            self.idle.append(await self._session())

    async def close(self) -> None:
        for name, batcher in (("begin", self.begin_batches), ("finish", self.finish_batches)):
            log.info("%s writes: %d payments in %d statements", name, batcher.items, batcher.batches)
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
        return conn

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        """Return a session to the pool as the other pooled sessions are (our release hook resets nothing);
        one that cannot be reset is closed, and the pool opens a new one when needed. Never raises."""
        try:
            await conn.execute(_WRITER_SESSION_RESET, timeout=WRITER_RESET_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any state we cannot reset (lost, mid-error) is closed, not reused
            with contextlib.suppress(asyncpg.InterfaceError):   # a lost connection is already detached
                conn.terminate()
        await self.pool.release(conn)

    async def begin(self, payment: NewPayment, idempotency_key: str, fingerprint: bytes) -> bool:
        """Write-ahead (idempotency row + payment + event) before any network I/O; False, writing nothing,
        when the idempotency key already has a row (Redis lost the key)."""
        return await self.begin_batches.submit((payment, idempotency_key, fingerprint))

    async def finish(self, item: Finish) -> bool:
        """Like finish_payment: False when the payment already left `processing`."""
        return await self.finish_batches.submit(item)

    async def _fetch(self, query: str, columns: list[list[object]]) -> list[asyncpg.Record]:
        conn = self.idle.pop() if self.idle else None
        try:
            if conn is None:                        # not started (tests) or a connection was lost
                return await self.pool.fetch(query, *columns)
            return await conn.fetch(query, *columns)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):   # OSError: timeouts too
            if conn is not None:                    # broken, or in an unknown state: swap it for a new one
                await self._give_back(conn)
                conn = None
                await self._replace_session()
            raise
        finally:
            if conn is not None:
                self.idle.append(conn)

    async def _replace_session(self) -> None:
        try:
            self.idle.append(await self._session())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass                                    # Postgres is away: later batches use pooled statements

    async def _begin_many(self, items: list[tuple[NewPayment, str, bytes]]) -> list[bool]:
        columns: list[list[object]] = [[] for _ in range(22)]
        for p, key, fingerprint in items:
            row = (p.id, p.merchant_id, p.amount, p.currency, p.capture_method, p.card_token, p.card_brand,
                   p.card_last4, p.card_exp_month, p.card_exp_year, p.network, p.terminal_id, p.stan, p.rrn,
                   p.transmitted_at, p.description, p.statement_descriptor, json.dumps(p.metadata), p.deadline_at,
                   key, fingerprint, p.created_at)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        inserted = {record[0] for record in await self._fetch(_BEGIN_PAYMENTS, columns)}
        return [p.id in inserted for p, _, _ in items]

    async def _finish_many(self, items: list[Finish]) -> list[bool]:
        columns: list[list[object]] = [[] for _ in range(12)]
        for item in sorted(items, key=lambda i: i.payment_id):   # a fixed lock order across batches
            o = item.outcome
            row = (item.payment_id, o.status, o.amount_capturable, o.amount_received, o.auth_code, o.response_code,
                   o.decline_code, o.failure_message, o.event_type, item.idempotency_key, item.response_status,
                   item.response_body)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        updated = {record[0] for record in await self._fetch(_FINISH_PAYMENTS, columns)}
        return [item.payment_id in updated for item in items]
