"""Publishable keys (``pk_test_...``): what a merchant's web page uses to tokenize cards at the vault.

The vault owns them outright (table ``vault.publishable_keys``, CLI ``vault publishable-keys``): the vault
never reads the switch's schema, and the switch needs no new operation on the vault socket. A publishable
key is not a secret (it sits in the merchant's page source); it only says which merchant a new token
belongs to, and all it can do is create tokens. It is still stored as SHA-256 with a visible prefix, like
the switch's secret keys, so a database dump does not hand out working keys. The merchant id is the
switch's (``acct_...``): tokens made through the public endpoint are then payable by that merchant only.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from switch.common.ids import key_digest, new_id, new_secret_key
from switch.common.ttlcache import TtlLru
from switch.vault_protocol import MERCHANT_ID_LENGTH_MAX

PUBLISHABLE_KEY_PREFIX = "pk_test_"
KEY_VISIBLE_CHARS = 12
KEY_LENGTH_MAX = 128
LOOKUP_CACHE_TTL_S = 30.0
LOOKUP_CACHE_SIZE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class CreatedPublishableKey:
    key_id: str
    merchant_id: str
    publishable_key: str
    prefix: str


@dataclass(frozen=True, slots=True)
class PublishableKeyOwner:
    key_id: str
    merchant_id: str
    prefix: str


hash_key = key_digest


def new_publishable_key() -> str:
    return new_secret_key(PUBLISHABLE_KEY_PREFIX)


async def create_publishable_key(conn: asyncpg.Connection, merchant_id: str) -> CreatedPublishableKey:
    if not 0 < len(merchant_id) <= MERCHANT_ID_LENGTH_MAX:
        raise ValueError(f"merchant id must be 1 to {MERCHANT_ID_LENGTH_MAX} characters")
    key = new_publishable_key()
    key_id = new_id("pkid")
    prefix = key[:KEY_VISIBLE_CHARS]
    await conn.execute("INSERT INTO vault.publishable_keys (id, merchant_id, prefix, key_hash)"
                       " VALUES ($1, $2, $3, $4)", key_id, merchant_id, prefix, hash_key(key))
    return CreatedPublishableKey(key_id, merchant_id, key, prefix)


async def revoke_publishable_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute(
        "UPDATE vault.publishable_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id)
    return str(status).endswith(" 1")


class PublishableKeyCache:
    """Bounded LRU of key hash → owner (or None for unknown keys, cached briefly). A revoked key stops
    working within ``ttl_s``."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = LOOKUP_CACHE_TTL_S,
                 size_max: int = LOOKUP_CACHE_SIZE_MAX) -> None:
        self._pool = pool
        self._cache: TtlLru[bytes, PublishableKeyOwner] = TtlLru(ttl_s, size_max)

    def __len__(self) -> int:
        return len(self._cache)

    async def owner(self, key: str) -> PublishableKeyOwner | None:
        if not key.startswith(PUBLISHABLE_KEY_PREFIX) or len(key) > KEY_LENGTH_MAX:
            return None
        digest = hash_key(key)
        found, owner = self._cache.lookup(digest)
        if found:
            return owner
        row = await self._pool.fetchrow(
            "SELECT id, merchant_id, prefix FROM vault.publishable_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            digest)
        owner = PublishableKeyOwner(row["id"], row["merchant_id"], row["prefix"]) if row else None
        self._cache.store(digest, owner)
        return owner
