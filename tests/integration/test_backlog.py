"""The backlog sample's webhook figures: deliveries queued, plus the events past each enabled endpoint's
cursor that it subscribes to, and how long the oldest of them has waited."""

from __future__ import annotations

import time

import asyncpg
import pytest

from switch.process.backlog import offset_s
from switch.store.backlog import select_backlog

pytestmark = pytest.mark.integration


async def test_the_sample_counts_what_waits_past_a_cursor_and_in_the_queue(stack):
    # In a transaction rolled back after; other tests' rows may be there too, so the sample is compared
    # with the one before, both in one snapshot (the running switch may deliver or give up on those rows
    # meanwhile).
    conn = await asyncpg.connect(stack.database_url)
    transaction = conn.transaction(isolation="repeatable_read")
    await transaction.start()
    try:
        before = await select_backlog(conn)
        await conn.execute("INSERT INTO merchants (id, name) VALUES ('acct_backlog', 'backlog')")
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret, cursor_xid) VALUES "
            "('we_backlog', 'acct_backlog', 'https://example.test/hook', '{payment.succeeded}', 'whsec_x', 0), "
            "('we_backlog_off', 'acct_backlog', 'https://example.test/off', '{*}', 'whsec_x', 0)")
        await conn.execute("UPDATE webhook_endpoints SET status = 'disabled' WHERE id = 'we_backlog_off'")
        # Three events it subscribes to, the oldest made 90 s ago, and one it does not.
        await conn.execute(
            "INSERT INTO events (merchant_id, type, object_id, created_at) VALUES "
            "('acct_backlog', 'payment.succeeded', 'pay_1', now() - interval '90 s'), "
            "('acct_backlog', 'payment.succeeded', 'pay_2', now()), "
            "('acct_backlog', 'payment.succeeded', 'pay_3', now()), "
            "('acct_backlog', 'refund.succeeded', 're_1', now() - interval '900 s')")
        await conn.execute("INSERT INTO webhook_deliveries (event_id, endpoint_id) VALUES (-1, 'we_backlog')")
        after = await select_backlog(conn)
    finally:
        await transaction.rollback()
        await conn.close()
    assert after["webhook_pending"] - before["webhook_pending"] == 4
    # The same transaction, so the same now(): the refund event and the disabled endpoint's are not waiting.
    assert after["webhook_lag_s"] == pytest.approx(max(before["webhook_lag_s"], 90.0))


async def test_the_sample_reads_the_databases_clock(stack):
    conn = await asyncpg.connect(stack.database_url)
    try:
        sent_at = time.time()
        row = await select_backlog(conn)
        answered_at = time.time()
    finally:
        await conn.close()
    # One host, one clock: the offset is the round trip's error at most.
    assert offset_s(row["database_time"], sent_at, answered_at) <= (answered_at - sent_at) / 2 + 0.05
    assert offset_s(row["database_time"] + 4.0, sent_at, answered_at) > 3.5        # a clock 4 s off shows
