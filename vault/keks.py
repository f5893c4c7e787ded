"""Key-encryption key (KEK) versions: rotation inside the HSM and re-wrapping of the stored keys (PCI 3.6/3.7).

A KEK is an AES key inside the HSM, named by its label. ``vault.keks`` records every version and which one
is active. Every wrapped key row (``vault.data_keys``, ``vault.fingerprint_key``) names the KEK label that
wrapped it, so a row keeps unwrapping under its old KEK until ``rewrap`` moves it to the active one: rotation
needs no downtime and no coordination with running vaults. The data keys themselves do not change, so the
ciphertexts of the cards are untouched and running vaults keep the keys they hold in memory.

Life of a KEK: ``active`` (wraps new keys) → ``retired`` (only unwraps rows not yet re-wrapped) →
``destroyed`` (HSM object deleted, once no row references it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from vault.hsm import Hsm, HsmError, kek_label

log = logging.getLogger("vault.keks")

FINGERPRINT_AAD = b"vault:fingerprint-key"
LABEL_SUFFIX_BYTES = 4

T = TypeVar("T")

_SQL_ACTIVE = "SELECT label FROM vault.keks WHERE state = 'active'"
_SQL_REFERENCED = """
SELECT kek_label FROM vault.data_keys UNION SELECT kek_label FROM vault.fingerprint_key
"""


def dek_aad(version: int) -> bytes:
    """Associated data binding a wrapped data key to its version (the same as ``vault.service``)."""
    return b"vault:dek:v%d" % version


@dataclass(frozen=True, slots=True)
class RewrapResult:
    rows_rewrapped: int
    active_label: str
    destroyed_labels: tuple[str, ...] = ()


async def hsm_call(function: Callable[..., T], *args: Any) -> T:
    """A blocking HSM call off the event loop; any failure becomes an HsmError without key material."""
    try:
        return await asyncio.to_thread(function, *args)
    except HsmError:
        raise
    except Exception as exc:
        raise HsmError(f"HSM call failed: {type(exc).__name__}") from None


async def ensure_active_kek(pool: asyncpg.Pool, hsm: Hsm, first_label: str) -> str:
    """The active KEK's label. On a fresh schema, ``first_label`` becomes version 1 (created in the HSM)."""
    await pool.execute("INSERT INTO vault.keks (version, label, state) VALUES (1, $1, 'active')"
                       " ON CONFLICT DO NOTHING", first_label)
    label: str | None = await pool.fetchval(_SQL_ACTIVE)
    if label is None:
        raise HsmError("no active key-encryption key in vault.keks")
    await hsm_call(hsm.ensure_kek, label)
    return label


async def active_kek(connection: asyncpg.Connection | asyncpg.Pool) -> str | None:
    label: str | None = await connection.fetchval(_SQL_ACTIVE)
    return label


async def rotate_kek(pool: asyncpg.Pool, hsm: Hsm) -> tuple[int, str]:
    """Create a new KEK version inside the HSM and make it the active one. Returns (version, label).

    The label carries a random suffix so that two deployments sharing one token never share a KEK, and an
    HSM object left by a rotation whose database write failed is never picked up again.
    """
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("LOCK TABLE vault.keks IN EXCLUSIVE MODE")
        version = (await connection.fetchval("SELECT coalesce(max(version), 0) FROM vault.keks")) + 1
        label = f"{kek_label(version)}-{secrets.token_hex(LABEL_SUFFIX_BYTES)}"
        await hsm_call(hsm.ensure_kek, label)
        await connection.execute("UPDATE vault.keks SET state = 'retired' WHERE state = 'active'")
        await connection.execute("INSERT INTO vault.keks (version, label, state) VALUES ($1, $2, 'active')",
                                 version, label)
    log.info("rotated to key-encryption key version %d (%s)", version, label)
    return version, label


async def rewrap(pool: asyncpg.Pool, hsm: Hsm, *, destroy_retired: bool = False) -> RewrapResult:
    """Re-wrap every stored key under the active KEK, in one transaction (a handful of rows).

    Each row is unwrapped with the KEK it names and wrapped again under the active one with the same
    associated data; the key inside does not change. ``destroy_retired`` then deletes from the HSM every
    retired KEK that no row references any more.
    """
    rewrapped = 0
    async with pool.acquire() as connection, connection.transaction():
        # Rotation waits for us (and we for it), so the active label cannot change under this transaction.
        active = await connection.fetchval("SELECT label FROM vault.keks WHERE state = 'active' FOR SHARE")
        if active is None:
            raise HsmError("no active key-encryption key in vault.keks")
        rows = await connection.fetch(
            "SELECT version, wrapped_key, nonce, kek_label FROM vault.data_keys WHERE kek_label <> $1"
            " ORDER BY version FOR UPDATE", active)
        for row in rows:
            nonce, wrapped = await _rewrap_one(hsm, row["kek_label"], active, row["nonce"], row["wrapped_key"],
                                               dek_aad(row["version"]))
            await connection.execute(
                "UPDATE vault.data_keys SET wrapped_key = $2, nonce = $3, kek_label = $4 WHERE version = $1",
                row["version"], wrapped, nonce, active)
            rewrapped += 1
        row = await connection.fetchrow(
            "SELECT wrapped_key, nonce, kek_label FROM vault.fingerprint_key WHERE kek_label <> $1 FOR UPDATE",
            active)
        if row is not None:
            nonce, wrapped = await _rewrap_one(hsm, row["kek_label"], active, row["nonce"], row["wrapped_key"],
                                               FINGERPRINT_AAD)
            await connection.execute(
                "UPDATE vault.fingerprint_key SET wrapped_key = $1, nonce = $2, kek_label = $3 WHERE id = 1",
                wrapped, nonce, active)
            rewrapped += 1
    destroyed = await destroy_unreferenced(pool, hsm) if destroy_retired else ()
    log.info("re-wrapped %d keys under %s", rewrapped, active)
    return RewrapResult(rewrapped, active, destroyed)


async def _rewrap_one(hsm: Hsm, old_label: str, new_label: str, nonce: bytes, wrapped: bytes,
                      associated_data: bytes) -> tuple[bytes, bytes]:
    secret = await hsm_call(hsm.unwrap, old_label, nonce, wrapped, associated_data)
    return await hsm_call(hsm.wrap, new_label, secret, associated_data)


async def destroy_unreferenced(pool: asyncpg.Pool, hsm: Hsm) -> tuple[str, ...]:
    """Delete from the HSM every retired KEK that no wrapped key references; mark it destroyed."""
    destroyed: list[str] = []
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("LOCK TABLE vault.keks IN EXCLUSIVE MODE")
        await connection.execute("LOCK TABLE vault.data_keys IN SHARE MODE")
        referenced = {row["kek_label"] for row in await connection.fetch(_SQL_REFERENCED)}
        for row in await connection.fetch("SELECT label FROM vault.keks WHERE state = 'retired' ORDER BY version"):
            if row["label"] in referenced:
                continue
            await hsm_call(hsm.destroy_kek, row["label"])
            await connection.execute("UPDATE vault.keks SET state = 'destroyed' WHERE label = $1", row["label"])
            destroyed.append(row["label"])
    return tuple(destroyed)
