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
from switch.store import merchants as merchant_store

KEY_PREFIX = "sk_test_"
KEY_VISIBLE_CHARS = 12
AUTH_CACHE_TTL_S = 30.0
AUTH_CACHE_SIZE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str
    rate_limit_per_s: int | None = None      # its own limit per API key, or None for the switch's default
    rate_limit_burst: int | None = None
    country: str = "US"                       # where it trades: the fraud screen's :merchant_country:


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key_id: str
    merchant_id: str
    api_key: str      # shown once; never stored
    prefix: str


hash_key = key_digest


def new_api_key() -> str:
    return new_secret_key(KEY_PREFIX)


async def create_merchant(conn: asyncpg.Connection, name: str, country: str = "US") -> CreatedKey:
    merchant_id = new_id("acct")
    async with conn.transaction():
        await merchant_store.insert_merchant(conn, merchant_id, name, country)
        return await create_key(conn, merchant_id)


async def create_key(conn: asyncpg.Connection, merchant_id: str) -> CreatedKey:
    api_key = new_api_key()
    key_id = new_id("key")
    prefix = api_key[:KEY_VISIBLE_CHARS]
    await merchant_store.insert_api_key(conn, key_id, merchant_id, prefix, hash_key(api_key))
    return CreatedKey(key_id, merchant_id, api_key, prefix)


async def set_rate_limit(conn: asyncpg.Connection, merchant_id: str, per_s: int | None, burst: int | None) -> bool:
    """A merchant's own request rate per API key (None: back to the default); workers apply it within the
    key cache's TTL."""
    return await merchant_store.update_merchant_rate_limit(conn, merchant_id, per_s, burst)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    return await merchant_store.update_key_revoked(conn, key_id)


class ApiKeyCache:
    """API key -> merchant, through a TtlLru on the key's hash (unknown keys are cached too, briefly)."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = AUTH_CACHE_TTL_S,
                 size_max: int = AUTH_CACHE_SIZE_MAX) -> None:
        self.pool = pool
        self.cache: TtlLru[bytes, Merchant] = TtlLru(ttl_s, size_max)

    async def merchant_for(self, api_key: str) -> Merchant | None:
        return await self.merchant_for_digest(hash_key(api_key))

    async def merchant_for_digest(self, digest: bytes) -> Merchant | None:
        found, merchant = self.cache.lookup(digest)
        if found:
            return merchant
        record = await merchant_store.get_merchant_by_key_hash(self.pool, digest)
        merchant = (Merchant(record.id, record.name, record.rate_limit_per_s, record.rate_limit_burst,
                             record.country) if record else None)
        self.cache.store(digest, merchant)
        return merchant
