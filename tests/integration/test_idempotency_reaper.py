"""The 24 h idempotency reaper (switch.store.idempotency.delete_expired_keys): finished keys older than the
retention go, recent ones and ones still in flight stay."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from switch.store import idempotency as store

pytestmark = pytest.mark.integration


async def test_reaper_removes_only_finished_keys_past_retention(db) -> None:
    merchant_id = f"acct_reaper{secrets.token_hex(6)}"
    await db.execute("INSERT INTO merchants (id, name) VALUES ($1, 'reaper')", merchant_id)
    rows = {  # key: (age, finished)
        "old-finished": (timedelta(days=2), True), "old-in-flight": (timedelta(days=2), False),
        "recent-finished": (timedelta(minutes=1), True),
    }
    for name, (age, finished) in rows.items():
        await db.execute(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint, "
            "outcome, created_at) VALUES ($1, $2, 'POST', '/v1/payments', '\\x00', $3, "
            "now() - $4::interval)", merchant_id, name, b"{}" if finished else None, age)
    deleted = await store.delete_expired_keys(db, retention_s=3600)
    left = {row["idempotency_key"] for row in await db.fetch(
        "SELECT idempotency_key FROM idempotency_keys WHERE merchant_id = $1", merchant_id)}
    assert left == {"old-in-flight", "recent-finished"}
    assert deleted >= 1
