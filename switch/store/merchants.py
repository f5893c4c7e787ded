"""Merchants and API keys (only a key's SHA-256 is stored)."""

from __future__ import annotations

import asyncpg

from switch.store.records import MerchantRecord


async def insert_merchant(conn: asyncpg.Connection, merchant_id: str, name: str, country: str = "US") -> None:
    await conn.execute("INSERT INTO merchants (id, name, country) VALUES ($1, $2, $3)", merchant_id, name, country)


async def insert_api_key(conn: asyncpg.Connection, key_id: str, merchant_id: str, prefix: str,
                         key_hash: bytes) -> None:
    await conn.execute("INSERT INTO api_keys (id, merchant_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
                       key_id, merchant_id, prefix, key_hash)


async def update_key_revoked(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                                key_id)
    return status.endswith(" 1")


async def get_merchant_by_key_hash(pool: asyncpg.Pool, key_hash: bytes) -> MerchantRecord | None:
    row = await pool.fetchrow(
        "SELECT m.id, m.name, m.rate_limit_per_s, m.rate_limit_burst, m.country FROM api_keys k "
        "JOIN merchants m ON m.id = k.merchant_id "
        "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND m.status = 'active'", key_hash)
    return MerchantRecord(row["id"], row["name"], row["rate_limit_per_s"], row["rate_limit_burst"],
                          row["country"]) if row else None


async def update_merchant_rate_limit(conn: asyncpg.Connection, merchant_id: str, per_s: int | None,
                                     burst: int | None) -> bool:
    status = await conn.execute("UPDATE merchants SET rate_limit_per_s = $2, rate_limit_burst = $3 WHERE id = $1",
                                merchant_id, per_s, burst)
    return status.endswith(" 1")
