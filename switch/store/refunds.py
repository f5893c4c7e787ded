"""Refunds: the pending row written before the network is asked, its finish, and recovery's scan."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg
import msgspec

from switch.store.payments import IN_FLIGHT_SCAN
from switch.store.records import LedgerEntry, OutboxItem, RefundRecord, refund_record

_json = msgspec.json.Encoder()

REFUND_COLUMNS = "id, payment_id, merchant_id, amount, currency, status, failure_code, created_at"


class PendingRefund(msgspec.Struct, kw_only=True):
    """A refund still `pending`, with what its reversal and its idempotency key need."""

    refund: RefundRecord
    network: str
    stan: str
    rrn: str
    transmitted_at: str
    idempotency_key: str


class Reservation(NamedTuple):
    """A refund's reservation, worked out by its transaction while it holds the payment's row lock."""

    refund: RefundRecord               # the pending refund, as written
    payment_status: str                # the payment's, which a reservation leaves as it is
    change_type: str                   # the payment's state-change row (payment_events)
    terminal_id: str                   # the refund's 0200 trace numbers
    stan: str
    rrn: str
    transmitted_at: str
    deadline_at: datetime              # after this, recovery fails and reverses it
    idempotency_key: str               # the request's (recovery answers it)
    event_data: bytes                  # the refund.created merchant event's data


# A refund's reservation in one statement, where it was four: the amount reserved on the payment, the
# payment's state-change row, the merchant event and the pending refund.
_RESERVE = """
WITH pay AS (
    UPDATE payments SET amount_refunded = amount_refunded + $4, updated_at = now() WHERE id = $2
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount) VALUES ($2, $6, $7, $7, $4)
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) VALUES ($3, 'refund.created', $1, $14)
)
INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, terminal_id, stan, rrn, transmitted_at,
                     deadline_at, idempotency_key, created_at)
VALUES ($1, $2, $3, $4, $5, $16, $8, $9, $10, $11, $12, $13, $15)"""


async def insert_reservation(conn: asyncpg.Connection, r: Reservation) -> None:
    refund = r.refund
    await conn.execute(_RESERVE, refund.id, refund.payment_id, refund.merchant_id, refund.amount, refund.currency,
                       r.change_type, r.payment_status, r.terminal_id, r.stan, r.rrn, r.transmitted_at,
                       r.deadline_at, r.idempotency_key, r.event_data, refund.created_at, refund.status)


class ReservationRow(msgspec.Struct):
    """One reservation of a batch as _RESERVE_MANY reads it (json_to_recordset: by field name)."""

    id: str
    payment_id: str
    merchant_id: str
    amount: int
    currency: str
    status: str
    change_type: str
    payment_status: str
    terminal_id: str
    stan: str
    rrn: str
    transmitted_at: str
    deadline_at: datetime
    idempotency_key: str
    event_data: bytes                   # travels as base64
    created_at: datetime


# A batch of reservations in one statement (switch.payments.locked): for each the same four writes as
# _RESERVE, the amounts reserved summed by payment (two refunds of one payment in a batch), and the keys the
# batch claimed but did not use deleted, as the one-at-a-time path's rollback would leave them.
_RESERVE_MANY = """
WITH input AS MATERIALIZED (
    SELECT id, payment_id, merchant_id, amount, currency, status, change_type, payment_status, terminal_id, stan,
           rrn, transmitted_at, deadline_at, idempotency_key, decode(event_data, 'base64') AS event_data, created_at
    FROM json_to_recordset($1::json)
        AS t(id text, payment_id text, merchant_id text, amount bigint, currency text, status text,
             change_type text, payment_status text, terminal_id text, stan text, rrn text, transmitted_at text,
             deadline_at timestamptz, idempotency_key text, event_data text, created_at timestamptz)
), pay AS (
    UPDATE payments p SET amount_refunded = p.amount_refunded + r.amount, updated_at = now()
    FROM (SELECT payment_id, sum(amount)::bigint AS amount FROM input GROUP BY payment_id) AS r
    WHERE p.id = ANY ($2::text[]) AND p.id = r.payment_id
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT payment_id, change_type, payment_status, payment_status, amount FROM input
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) SELECT merchant_id, 'refund.created', id, event_data
    FROM input
), refund AS (
    INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, terminal_id, stan, rrn,
                         transmitted_at, deadline_at, idempotency_key, created_at)
    SELECT id, payment_id, merchant_id, amount, currency, status, terminal_id, stan, rrn, transmitted_at,
           deadline_at, idempotency_key, created_at
    FROM input
)
DELETE FROM idempotency_keys k USING unnest($3::text[], $4::text[]) AS r(merchant_id, idempotency_key)
WHERE k.merchant_id = r.merchant_id AND k.idempotency_key = r.idempotency_key"""
RESERVE_MANY_ARGUMENTS = 4


async def insert_reservations(conn: asyncpg.Connection, reservations: Sequence[Reservation],
                              released: Sequence[tuple[str, str]]) -> None:
    """Write `reservations` (of payments this transaction holds) and delete the `released` (merchant, key)
    claims."""
    rows = [ReservationRow(r.refund.id, r.refund.payment_id, r.refund.merchant_id, r.refund.amount,
                           r.refund.currency, r.refund.status, r.change_type, r.payment_status, r.terminal_id,
                           r.stan, r.rrn, r.transmitted_at, r.deadline_at, r.idempotency_key, r.event_data,
                           r.refund.created_at)
            for r in reservations]
    await conn.execute(_RESERVE_MANY, _json.encode(rows).decode(), list({row.payment_id for row in rows}),
                       [merchant for merchant, _ in released], [key for _, key in released])


class Finished(NamedTuple):
    """A pending refund's finish, worked out before it is written: the refund as it leaves `pending`, and
    what goes with it."""

    refund: RefundRecord               # its status and failure code as the finish leaves them
    response_code: str | None          # the network's field 39, when it answered
    payment_status: str                # the payment's, which a refund leaves as it is
    change_type: str                   # the payment's state-change row (payment_events)
    entries: list[LedgerEntry]         # the refund's ledger entries (none when it failed)
    reversal: OutboxItem | None        # the 0200's reversal, when it may have reached the network
    event_type: str                    # refund.succeeded | refund.failed
    event_data: bytes
    idempotency_key: str
    outcome: bytes                     # the key's answer
    only_open_key: bool                # recovery: answer the key only if nothing answered it yet


# A refund's finish in one statement, where it was up to eight round trips in a transaction: the refund
# leaves `pending`, and only if it did (recovery may have finished it first), the reservation released on
# a failure (the refund's whole amount), the payment's state-change row, the ledger entries on a success,
# the reversal when it may have reached the network, the merchant event and the key's answer. Alone it
# needs no transaction.
_FINISH = """
WITH refund AS (
    UPDATE refunds SET status = $2, failure_code = $3, response_code = $4, updated_at = now()
    WHERE id = $1 AND status = 'pending' RETURNING id
), released AS (
    UPDATE payments SET amount_refunded = amount_refunded - $8, updated_at = now()
    WHERE id = $5 AND $2 <> 'succeeded' AND EXISTS (SELECT FROM refund)
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code)
    SELECT $5, $6, $7, $7, $8, $4 FROM refund
), ledger AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT e.* FROM unnest($9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[]) AS e
    WHERE EXISTS (SELECT FROM refund)
), reversal AS (
    INSERT INTO network_outbox (payment_id, kind, refund_id, network, original_mti, processing_code, amount,
                                original_amount, stan, rrn, transmitted_at)
    SELECT $14::text, $15::text, $16::text, $17::text, $18::text, $19::text, $20::bigint, $21::bigint, $22::text,
           $23::text, $24::text
    FROM refund WHERE $15::text IS NOT NULL
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) SELECT $25, $26, $1, $27 FROM refund
), key AS (
    UPDATE idempotency_keys SET outcome = $28, payment_id = $5, finished_at = now()
    WHERE merchant_id = $25 AND idempotency_key = $29 AND EXISTS (SELECT FROM refund)
      AND (outcome IS NULL OR NOT $30)
)
SELECT count(*) FROM refund"""


async def write_finished(conn: asyncpg.Connection | asyncpg.Pool, f: Finished) -> bool:
    """Write a refund's finish; False, writing nothing, when it is no longer pending."""
    r, e, x = f.refund, f.entries, f.reversal
    reversal = ((x.payment_id, x.kind, x.refund_id, x.network, x.original_mti, x.processing_code, x.amount,
                 x.original_amount, x.stan, x.rrn, x.transmitted_at) if x is not None else (None,) * 11)
    return bool(await conn.fetchval(
        _FINISH, r.id, r.status, r.failure_code, f.response_code, r.payment_id, f.change_type,
        f.payment_status, r.amount, [i.posting_id for i in e], [i.payment_id for i in e], [i.account for i in e],
        [i.amount for i in e], [i.currency for i in e], *reversal, r.merchant_id, f.event_type, f.event_data,
        f.outcome, f.idempotency_key, f.only_open_key))


async def get_refund(pool: asyncpg.Pool, merchant_id: str, refund_id: str) -> RefundRecord | None:
    row = await pool.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2",
                              refund_id, merchant_id)
    return refund_record(row) if row else None


async def lock_overdue_refunds(conn: asyncpg.Connection, grace_s: float, batch_max: int) -> list[PendingRefund]:
    """Refunds still `pending` past their deadline plus `grace_s` (their worker died mid-flight). Inside the
    caller's transaction, whose settings it changes (the in-flight index in order, as for payments)."""
    await conn.execute(IN_FLIGHT_SCAN)
    rows = await conn.fetch(
        "SELECT r.id, r.payment_id, r.merchant_id, r.amount, r.currency, r.status, r.failure_code, r.created_at, "
        "r.stan, r.rrn, r.transmitted_at, r.idempotency_key, p.network "
        "FROM refunds r JOIN payments p ON p.id = r.payment_id "
        "WHERE r.status = 'pending' AND r.deadline_at < now() - make_interval(secs => $1) "
        "ORDER BY r.deadline_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED", grace_s, batch_max)
    return [PendingRefund(refund=RefundRecord(id=r["id"], payment_id=r["payment_id"], merchant_id=r["merchant_id"],
                                              amount=r["amount"], currency=r["currency"], status=r["status"],
                                              failure_code=r["failure_code"], created_at=r["created_at"]),
                          network=r["network"], stan=r["stan"], rrn=r["rrn"],
                          transmitted_at=r["transmitted_at"], idempotency_key=r["idempotency_key"]) for r in rows]


async def list_refunds(pool: asyncpg.Pool, merchant_id: str, limit: int, payment_id: str | None,
                       starting_after: str | None, ending_before: str | None) -> tuple[list[RefundRecord], bool]:
    """Newest first (of one payment, or all the merchant's), keyset pagination on (created_at, id)."""
    conditions, args = ["merchant_id = $1"], [merchant_id]
    cursor = starting_after or ending_before
    if payment_id is not None:
        args.append(payment_id)
        conditions.append(f"payment_id = ${len(args)}")
    order = "DESC"
    if cursor:
        args.append(cursor)
        comparison, order = ("<", "DESC") if starting_after else (">", "ASC")
        conditions.append(f"(created_at, id) {comparison} (SELECT created_at, id FROM refunds WHERE id = ${len(args)} "
                          "AND merchant_id = $1)")
    rows = await pool.fetch(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE {' AND '.join(conditions)} "
                            f"ORDER BY created_at {order}, id {order} LIMIT {int(limit) + 1}", *args)
    records = [refund_record(row) for row in rows[:limit]]
    if order == "ASC":
        records.reverse()
    return records, len(rows) > limit
