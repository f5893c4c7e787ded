"""Merchant events (`events`): a row per state change a merchant can see, written with the change, read by
the events API, and pruned after the retention period in bounded batches.

The hot path's statements (switch.store.writer, switch.store.payments' fail statement) and the
settlement's set-based SQL insert their rows themselves; the single-row transactions use `insert`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

from switch.store.payments import PAYMENT_COLUMNS

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

RETENTION_DAYS = 30
PRUNE_BATCH_MAX = 10_000

# The merchant event a payment's answer is (the statement that finishes it writes it): by its new status.
PAYMENT_ANSWERED_TYPE = ("CASE {status} WHEN 'requires_capture' THEN 'payment.authorized' "
                         "WHEN 'succeeded' THEN 'payment.succeeded' ELSE 'payment.failed' END")

EVENT_COLUMNS = "id, merchant_id, type, object_id, data, created_at"


async def insert(conn: asyncpg.Connection, merchant_id: str, type_: str, object_id: str, data: bytes | None) -> None:
    await conn.execute("INSERT INTO events (merchant_id, type, object_id, data) VALUES ($1, $2, $3, $4)",
                       merchant_id, type_, object_id, data)


async def get(conn: Conn, merchant_id: str, event_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND merchant_id = $2",
                               event_id, merchant_id)


async def list_events(conn: Conn, merchant_id: str, before_id: int | None, after_id: int | None,
                      type_pattern: str | None, created_gte: datetime | None, created_lte: datetime | None,
                      limit: int) -> list[asyncpg.Record]:
    """A merchant's events, newest first (oldest first after `after_id`, for ending_before); `type_pattern`
    is a LIKE pattern."""
    order = "ASC" if after_id is not None else "DESC"
    return await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE merchant_id = $1 "
        "AND id < coalesce($2::bigint, 9223372036854775807) AND id > coalesce($3::bigint, 0) "
        "AND ($4::text IS NULL OR type LIKE $4) AND ($5::timestamptz IS NULL OR created_at >= $5) "
        f"AND ($6::timestamptz IS NULL OR created_at <= $6) ORDER BY id {order} LIMIT $7",
        merchant_id, before_id, after_id, type_pattern, created_gte, created_lte, limit)


async def current_objects(conn: Conn, payment_ids: list[str]) -> dict[str, asyncpg.Record]:
    """The payments' rows as they are now, for events written without their object (set-based SQL)."""
    rows = await conn.fetch(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ANY($1::text[])", payment_ids)
    return {row["id"]: row for row in rows}


# The oldest events past the retention period, with their webhook deliveries and attempts (a delivery
# is at most 3 days younger than its event, so none of them is pending any more).
PRUNE = """
WITH old AS (
    SELECT id FROM events WHERE created_at < now() - make_interval(days => $1) ORDER BY created_at LIMIT $2
), attempts AS (
    DELETE FROM webhook_attempts a USING old WHERE a.event_id = old.id
), gone_deliveries AS (
    DELETE FROM webhook_deliveries d USING old WHERE d.event_id = old.id
)
DELETE FROM events e USING old WHERE e.id = old.id"""


async def prune(conn: Conn, retention_days: int = RETENTION_DAYS, batch_max: int = PRUNE_BATCH_MAX) -> int:
    """Delete up to `batch_max` of the oldest events past the retention period, with their deliveries;
    how many events went."""
    status = await conn.execute(PRUNE, retention_days, batch_max)
    return int(status.split()[-1])
