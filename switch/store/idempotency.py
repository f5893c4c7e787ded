"""Idempotency rows: the write-ahead record of a merchant request and the canonical outcome it answers."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from switch.store.records import IdempotencyRecord

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def get_key(conn: Conn, merchant_id: str, key: str) -> IdempotencyRecord | None:
    row = await conn.fetchrow("SELECT fingerprint, outcome FROM idempotency_keys "
                              "WHERE merchant_id = $1 AND idempotency_key = $2", merchant_id, key)
    return IdempotencyRecord(row[0], row[1]) if row else None


async def update_key_outcome(conn: asyncpg.Connection, merchant_id: str, key: str, outcome: bytes,
                             payment_id: str | None) -> None:
    await conn.execute("UPDATE idempotency_keys SET outcome = $3, payment_id = $4, finished_at = now() "
                       "WHERE merchant_id = $1 AND idempotency_key = $2", merchant_id, key, outcome, payment_id)


async def delete_expired_keys(pool: asyncpg.Pool, retention_s: int, batch_max: int = 5000) -> int:
    """The 24 h reaper: remove finished keys older than the retention, in bounded batches."""
    status = await pool.execute(
        "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY (SELECT ctid FROM idempotency_keys "
        "WHERE created_at < now() - make_interval(secs => $1) AND outcome IS NOT NULL LIMIT $2))",
        float(retention_s), batch_max)
    return int(status.split()[-1])
