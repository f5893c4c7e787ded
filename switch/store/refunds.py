"""Refunds: the pending row written before the network is asked, its finish, and recovery's scan."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg
import msgspec

from switch.store.records import RefundRecord, refund_record

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


async def update_refund_finished(conn: asyncpg.Connection, refund_id: str, status: str, failure_code: str | None,
                                 response_code: str | None) -> RefundRecord | None:
    """Move a pending refund to `status`; None when it is no longer pending (recovery finished it)."""
    row = await conn.fetchrow(
        f"UPDATE refunds SET status = $2, failure_code = $3, response_code = $4, updated_at = now() "
        f"WHERE id = $1 AND status = 'pending' RETURNING {REFUND_COLUMNS}", refund_id, status, failure_code,
        response_code)
    return refund_record(row) if row else None


async def get_refund(pool: asyncpg.Pool, merchant_id: str, refund_id: str) -> RefundRecord | None:
    row = await pool.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2",
                              refund_id, merchant_id)
    return refund_record(row) if row else None


async def lock_overdue_refunds(conn: asyncpg.Connection, grace_s: float, batch_max: int) -> list[PendingRefund]:
    """Refunds still `pending` past their deadline plus `grace_s` (their worker died mid-flight)."""
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
