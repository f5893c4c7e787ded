"""Merchants and their API keys.

A key is ``sk_test_`` + 256 random bits in base62. Only its SHA-256 is stored (a random 256-bit secret
needs no salt or stretching), with the first 12 characters as a visible prefix; the key is shown once.
Workers cache key -> merchant lookups for ``AUTH_CACHE_TTL_S`` so a payment costs no extra round trip;
a revoked key stops working within that time.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from switch.common.ids import key_digest, new_id, new_secret_key
from switch.common.ttlcache import TtlLru

KEY_PREFIX = "sk_test_"
KEY_VISIBLE_CHARS = 12
AUTH_CACHE_TTL_S = 30.0
AUTH_CACHE_SIZE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key_id: str
    merchant_id: str
    api_key: str      # shown once; never stored
    prefix: str


hash_key = key_digest


def new_api_key() -> str:
    return new_secret_key(KEY_PREFIX)


async def create_merchant(conn: asyncpg.Connection, name: str) -> CreatedKey:
    merchant_id = new_id("acct")
    async with conn.transaction():
        await conn.execute("INSERT INTO merchants (id, name) VALUES ($1, $2)", merchant_id, name)
        return await create_key(conn, merchant_id)


async def create_key(conn: asyncpg.Connection, merchant_id: str) -> CreatedKey:
    api_key = new_api_key()
    key_id = new_id("key")
    prefix = api_key[:KEY_VISIBLE_CHARS]
    await conn.execute("INSERT INTO api_keys (id, merchant_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
                       key_id, merchant_id, prefix, hash_key(api_key))
    return CreatedKey(key_id, merchant_id, api_key, prefix)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                                key_id)
    return status.endswith(" 1")


class ApiKeyCache:
    """API key -> merchant, through a TtlLru on the key's hash (unknown keys are cached too, briefly)."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = AUTH_CACHE_TTL_S,
                 size_max: int = AUTH_CACHE_SIZE_MAX) -> None:
        self.pool = pool
        self.cache: TtlLru[bytes, Merchant] = TtlLru(ttl_s, size_max)

    async def merchant_for(self, api_key: str) -> Merchant | None:
        digest = hash_key(api_key)
        found, merchant = self.cache.lookup(digest)
        if found:
            return merchant
        row = await self.pool.fetchrow(
            "SELECT m.id, m.name FROM api_keys k JOIN merchants m ON m.id = k.merchant_id "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND m.status = 'active'", digest)
        merchant = Merchant(row["id"], row["name"]) if row else None
        self.cache.store(digest, merchant)
        return merchant
