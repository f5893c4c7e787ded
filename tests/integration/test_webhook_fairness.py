"""The delivery queue's claim shares the deliverer between endpoints: a dead endpoint with a backlog of due
retries (each failing fast, so never at its in-flight cap for long) must not keep another endpoint's
delivery waiting behind it. Run on a schema of its own, so the stack's deliverer does not take the rows."""

from __future__ import annotations

import secrets
from collections import Counter

import asyncpg
import pytest

from switch.dev.devstack import SCHEMA_SWITCH, Stack
from switch.store import webhooks as webhook_store

pytestmark = pytest.mark.integration

BACKLOG = 600


async def test_a_dead_endpoints_backlog_does_not_starve_another_endpoint(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.database_url)
    schema = f"fairness_{secrets.token_hex(4)}"
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
        await conn.execute(SCHEMA_SWITCH.read_text())
        await conn.execute("INSERT INTO merchants (id, name) VALUES ('acct_dead', 'dead'), ('acct_live', 'live')")
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret) VALUES "
            "('we_dead', 'acct_dead', 'http://127.0.0.1:9/dead', '{*}', 'whsec_x'), "
            "('we_live', 'acct_live', 'http://127.0.0.1:9/live', '{*}', 'whsec_y')")
        await conn.executemany("INSERT INTO events (merchant_id, type, object_id) VALUES ($1, 'payment.succeeded', $2)",
                               [("acct_dead", f"pay_{i}") for i in range(BACKLOG)])
        await conn.execute("INSERT INTO events (merchant_id, type, object_id) VALUES ('acct_live', "
                           "'payment.succeeded', 'pay_live')")
        # Queued (first attempts failed, or replays): the dead endpoint's are all due, and older than the
        # live endpoint's one.
        await conn.execute("INSERT INTO webhook_deliveries (event_id, endpoint_id) SELECT e.id, w.id FROM "
                           "events e JOIN webhook_endpoints w USING (merchant_id)")
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute' "
                           "WHERE endpoint_id = 'we_dead'")
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second' "
                           "WHERE endpoint_id = 'we_live'")
        claimed = await webhook_store.claim_due(conn, 64, 16, 30.0, {})
        per_endpoint = Counter(row["endpoint_id"] for row in claimed)
        assert per_endpoint["we_live"] == 1, per_endpoint
        assert per_endpoint["we_dead"] == 16, per_endpoint        # its cap, not the whole batch
        # The next pass, with the dead endpoint's 16 still in flight: nothing more of it.
        again = await webhook_store.claim_due(conn, 64, 16, 30.0, {"we_dead": 0})
        assert not [row for row in again if row["endpoint_id"] == "we_dead"]
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
