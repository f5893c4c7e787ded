"""The vault's token statements find rows by their keys, whatever plan a connection settles on.

A connection plans a prepared statement generically once it has run it five times. On a new stack
vault.tokens is small and a sequential scan looks cheaper; that plan then stayed as the table grew (a 30 s
bench read 75 million rows of a 16,000-row table). The vault's pool turns sequential scans off.
"""

from __future__ import annotations

import pytest

from tests.plans import generic_plan
from vault.server import create_pool
from vault.service import _SQL_SELECT_CARDS, _SQL_STORE_CARD, _SQL_STORE_CARDS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("name", "query", "arguments"), [
    ("card read", _SQL_SELECT_CARDS, 2), ("card store, batched", _SQL_STORE_CARDS, 11),
    ("card store, one", _SQL_STORE_CARD, 11)])
async def test_token_statements_use_the_tokens_indexes(vault_stack, name, query, arguments):
    pool = await create_pool(vault_stack.vault_database_url, 2)
    try:
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE vault.tokens")
            plan = await generic_plan(conn, query, arguments)
    finally:
        await pool.close()
    assert "Seq Scan on tokens" not in plan, plan
    # Each card found by its key: an index scan with a condition, not a full scan filtered by a join.
    lines = plan.splitlines()
    lookups = [n for n, line in enumerate(lines) if "Scan" in line and " on tokens" in line]
    assert lookups, plan
    for n in lookups:
        assert "Index Cond" in lines[n + 1], plan
    if name == "card read":
        assert "tokens_pkey" in plan, plan


async def test_the_card_read_is_planned_once_per_connection(vault_stack):
    # Past its first five runs a prepared statement is planned again on every run while its plans for the
    # values at hand look cheaper than its generic plan. The card read's did, for a batch of a few tokens
    # against the generic plan's ten, so it was planned on nearly every call: 9,734 plans in 12,248 calls
    # of a 60 s bench, 83 µs each against 30 µs to run. The vault's sessions take the generic plan.
    pool = await create_pool(vault_stack.vault_database_url, 1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"PREPARE card_read AS {_SQL_SELECT_CARDS}")
            try:
                for _ in range(8):
                    await conn.execute("EXECUTE card_read('{tok_a,tok_b}', '{acct_a,acct_a}')")
                plan = "\n".join(row[0] for row in await conn.fetch(
                    "EXPLAIN (VERBOSE) EXECUTE card_read('{tok_a,tok_b}', '{acct_a,acct_a}')"))
            finally:
                await conn.execute("DEALLOCATE card_read")
    finally:
        await pool.close()
    assert "$1" in plan and "tok_a" not in plan, plan
