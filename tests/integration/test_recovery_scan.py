"""Recovery's scan of payments in flight steps over the payments that have finished since the last vacuum.

The payments_in_flight partial index keeps an entry for each of them until vacuum. A plain index scan marks
each such entry dead the first time it visits its row; a bitmap scan never does, and re-read every one of
their rows on every pass (docs/performance.md). The session here prefers a bitmap scan, as the planner did
in the bench: recovery's own setting must still read the index in order.
"""

from __future__ import annotations

import json

import asyncpg
import pytest

from switch.store.payments import FAIL_BY_PAYMENT, IN_FLIGHT_SCAN, OVERDUE_PAYMENTS
from tests.plans import generic_plan, scan_conditions

pytestmark = pytest.mark.integration

FINISHED = 20_000
NETWORK = "recovery-scan-test"

_SEED = """
INSERT INTO payments (id, merchant_id, status, amount, currency, capture_method, card_token, card_brand,
                      card_last4, card_exp_month, card_exp_year, network, terminal_id, stan, rrn, transmitted_at,
                      deadline_at, created_at)
SELECT 'pay_scan' || g, 'acct_scan', 'processing', 1000, 'usd', 'automatic', 'tok_scan', 'visa', '0000', 12, 2030,
       $2, 'SW000001', lpad(g::text, 6, '0'), lpad(g::text, 12, '0'), '1206120000',
       now() + interval '1 hour' + g * interval '1 ms', now()
FROM generate_series(1, $1) AS g"""
# The rows' deadlines are an hour away, so the stack's own switch, whose recovery runs every second, never
# takes them as overdue, nor reaches their entries in the index. The test's passes reach them with a grace
# of minus two hours.
GRACE_S = -7200.0


async def _pages_read(conn: asyncpg.Connection) -> int:
    """The shared pages one pass of recovery's scan touched (hit or read)."""
    rows = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {OVERDUE_PAYMENTS}", GRACE_S, 100)
    plan = json.loads(rows)[0]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


async def test_a_second_pass_skips_the_finished_payments(stack):
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(_SEED, FINISHED, NETWORK)
        await conn.execute("UPDATE payments SET status = 'failed' WHERE network = $1", NETWORK)
        await conn.execute("ANALYZE payments")
        await conn.execute("SET enable_indexscan = off")       # the planner's choice in the bench: a bitmap scan
        async with conn.transaction():
            await conn.execute(IN_FLIGHT_SCAN)
            first = await _pages_read(conn)
            second = await _pages_read(conn)
    finally:
        await conn.execute("DELETE FROM payments WHERE network = $1", NETWORK)
        await conn.close()
    assert first > FINISHED / 50            # the first pass visits the finished payments' rows
    assert second < FINISHED / 100, (first, second)


async def test_recovery_answers_a_payment_key_by_primary_key(stack):
    # Recovery knows the payment, not its key: the key comes from the payment's row. Found by payment id
    # instead (idempotency_keys has no index on it), each recovered payment read every key of its merchant.
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with conn.transaction():
            await conn.execute(IN_FLIGHT_SCAN)                  # recovery's transaction
            plan = await generic_plan(conn, FAIL_BY_PAYMENT, 14)
    finally:
        await conn.close()
    assert "Index Scan using idempotency_keys_pkey on idempotency_keys k" in plan, plan
    assert scan_conditions(plan, "on idempotency_keys k")[0] == (
        "Index Cond: ((merchant_id = pay_4.merchant_id) AND (idempotency_key = pay_4.idempotency_key))")
