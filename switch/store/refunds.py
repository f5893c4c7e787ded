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


class FinishedRow(msgspec.Struct):
    """One refund of a finish batch, as FINISH_MANY reads it (json_to_recordset: by field name). Bytes travel
    as base64, the ledger entries as their arrays, the reversal as its object (or null)."""

    id: str
    status: str
    failure_code: str | None
    response_code: str | None
    payment_id: str
    change_type: str
    payment_status: str
    amount: int
    merchant_id: str
    event_type: str
    event_data: bytes
    outcome: bytes
    idempotency_key: str
    only_open_key: bool
    ledger: list[LedgerEntry]
    reversal: OutboxItem | None


# Refunds' finishes in one statement, a batch of them (group-committed with the refunds that finish with
# them, switch.store.writer), where one was up to eight round trips in a transaction. Each refund leaves
# `pending`, and only those that did (recovery may have finished one first) go on: the reservation released
# on a failure (the refund's whole amount, summed by payment), the payment's state-change row, the ledger
# entries on a success, the reversal when the 0200 may have reached the network, the merchant event and the
# key's answer. The refunds' ids, and the ids of the payments whose refunds fail, are arrays besides the
# rows, so each row is found by its key whatever the plan's statistics: joined to the batch, the plan made on
# an empty table looked payments up by id in an index that leads with the merchant (the whole index each
# time). The pending guard compares with a column of the input, as the payments' finish does, so the
# planner does not read the refunds' in-flight index (see switch.store.writer.FINISH_PAYMENTS).
# A batch locks its refunds and the payments of its failing ones. A deadlock with recovery, which locks the
# payments of its overdue refunds one after another, is possible (both must fail refunds of the same two
# payments at once): Postgres breaks it within deadlock_timeout, and the batch that lost is split and retried
# (switch.common.batch), its halves counted as splits.
FINISH_MANY = """
WITH input AS MATERIALIZED (
    SELECT id, status, failure_code, response_code, payment_id, change_type, payment_status, amount, merchant_id,
           event_type, decode(event_data, 'base64') AS event_data, decode(outcome, 'base64') AS outcome,
           idempotency_key, only_open_key, ledger, reversal, 'pending'::text AS from_status
    FROM json_to_recordset($2::json)
        AS t(id text, status text, failure_code text, response_code text, payment_id text, change_type text,
             payment_status text, amount bigint, merchant_id text, event_type text, event_data text, outcome text,
             idempotency_key text, only_open_key boolean, ledger json, reversal json)
), refund AS (
    UPDATE refunds r SET status = i.status, failure_code = i.failure_code, response_code = i.response_code,
        updated_at = now()
    FROM input i WHERE r.id = ANY ($1::text[]) AND r.id = i.id AND r.status = i.from_status
    RETURNING r.id
), done AS MATERIALIZED (
    SELECT i.* FROM input i JOIN refund ON refund.id = i.id
), released AS (
    UPDATE payments p SET amount_refunded = p.amount_refunded - (
            SELECT sum(d.amount) FROM done d WHERE d.payment_id = p.id AND d.status <> 'succeeded')::bigint,
        updated_at = now()
    WHERE p.id = ANY ($3::text[]) AND p.id = ANY (ARRAY (SELECT payment_id FROM done WHERE status <> 'succeeded'))
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code)
    SELECT payment_id, change_type, payment_status, payment_status, amount, response_code FROM done
), ledger AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT e.entry->>0, e.entry->>1, e.entry->>2, (e.entry->>3)::bigint, e.entry->>4
    FROM done d CROSS JOIN LATERAL json_array_elements(d.ledger) AS e(entry)
    WHERE json_typeof(d.ledger) = 'array'
), reversal AS (
    INSERT INTO network_outbox (payment_id, kind, refund_id, network, original_mti, processing_code, amount,
                                original_amount, stan, rrn, transmitted_at)
    SELECT x->>'payment_id', x->>'kind', x->>'refund_id', x->>'network', x->>'original_mti', x->>'processing_code',
           (x->>'amount')::bigint, (x->>'original_amount')::bigint, x->>'stan', x->>'rrn', x->>'transmitted_at'
    FROM (SELECT reversal AS x FROM done WHERE json_typeof(reversal) = 'object') AS r
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) SELECT merchant_id, event_type, id, event_data FROM done
), key AS (
    UPDATE idempotency_keys k SET outcome = d.outcome, payment_id = d.payment_id, finished_at = now()
    FROM done d WHERE k.merchant_id = d.merchant_id AND k.idempotency_key = d.idempotency_key
      AND (k.outcome IS NULL OR NOT d.only_open_key)
)
SELECT id FROM refund"""
FINISH_MANY_ARGUMENTS = 3


def finish_arguments(finishes: Sequence[Finished]) -> list[object]:
    """FINISH_MANY's parameters for `finishes`, in their order (Postgres locks the rows in the order its plan
    reaches them, not in the parameters')."""
    rows = [FinishedRow(f.refund.id, f.refund.status, f.refund.failure_code, f.response_code, f.refund.payment_id,
                        f.change_type, f.payment_status, f.refund.amount, f.refund.merchant_id, f.event_type,
                        f.event_data, f.outcome, f.idempotency_key, f.only_open_key, f.entries, f.reversal)
            for f in finishes]
    failing = sorted({row.payment_id for row in rows if row.status != "succeeded"})
    return [[row.id for row in rows], _json.encode(rows).decode(), failing]


async def write_finished_many(conn: asyncpg.Connection, finishes: Sequence[Finished]) -> set[str]:
    """Write refunds' finishes; the ids of those written (a refund no longer pending writes nothing)."""
    return {row[0] for row in await conn.fetch(FINISH_MANY, *finish_arguments(finishes))}


async def write_finished(conn: asyncpg.Connection, f: Finished) -> bool:
    """Write one refund's finish (recovery's, inside its transaction); False, writing nothing, when it is no
    longer pending."""
    return f.refund.id in await write_finished_many(conn, [f])


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
