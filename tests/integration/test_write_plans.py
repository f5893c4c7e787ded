"""The batched finish statement finds each payment by its primary key, whatever the table statistics say.

Its plan is made once per connection, typically on a fresh, nearly empty database. Two plans looked cheap
then and grew with every payment: a sequential scan of `payments`, and a bitmap scan of the
payments_in_flight partial index, which re-reads the dead entry of every finished payment until vacuum.
"""

from __future__ import annotations

import pytest

from switch import store

pytestmark = pytest.mark.integration


async def generic_plan(conn, query: str, arguments: int) -> str:
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE plan_probe AS {query}")
    try:
        empty = ", ".join(["'{}'"] * arguments)
        rows = await conn.fetch(f"EXPLAIN EXECUTE plan_probe({empty})")
    finally:
        await conn.execute("DEALLOCATE plan_probe")
        await conn.execute("RESET plan_cache_mode")
    return "\n".join(row[0] for row in rows)


async def test_finish_batches_update_payments_by_primary_key(stack):
    pool = await store.create_pool(stack.database_url, 8)
    writer = store.PaymentWriter(pool)
    await writer.start()
    try:
        plan = await generic_plan(writer.idle[0], store._FINISH_PAYMENTS, 12)
    finally:
        await writer.close()
        await pool.close()
    assert "payments_pkey" in plan
    assert "Seq Scan on payments" not in plan
    assert "payments_in_flight" not in plan
