"""The batched finish statement finds each payment by its primary key, whatever the table statistics say.

Its plan is made once per connection, typically on a fresh, nearly empty database. Two plans looked cheap
then and grew with every payment: a sequential scan of `payments`, and a bitmap scan of the
payments_in_flight partial index, which re-reads the dead entry of every finished payment until vacuum.
A third searched the idempotency keys' index by its second column alone, reading all of it for every row.
"""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest

from switch.common.pg_settings import KEYED_ONLY
from switch.store import pool as store_pool
from switch.store import refunds as refund_store
from switch.store.writer import BEGIN_PAYMENTS, FINISH_PAYMENTS, FINISH_PAYMENTS_ARGUMENTS, PaymentWriter
from tests.plans import generic_plan, scan_conditions

pytestmark = pytest.mark.integration


async def test_finish_batches_update_payments_by_primary_key(stack):
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        plan = await generic_plan(writer.idle[0], FINISH_PAYMENTS, FINISH_PAYMENTS_ARGUMENTS, "'{}'")
    finally:
        await writer.close()
        pool.terminate()                    # no wait on a session a failing close() kept
    assert "Seq Scan on payments" not in plan
    assert "payments_in_flight" not in plan
    # By the batch's ids, whatever the statistics: with only the join clauses, a plan made on an empty,
    # analyzed table read all of payments_pkey under a join filter (seen on a scratch database).
    assert "Index Cond: (id = ANY ($1))" in scan_conditions(plan, "on payments p")
    assert scan_conditions(plan, "on idempotency_keys k") == [
        "Index Cond: ((merchant_id = i_3.merchant_id) AND (idempotency_key = i_3.idempotency_key))"]


async def test_refund_finish_batches_reach_their_rows_by_key(stack):
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        plan = await generic_plan(writer.idle[0], refund_store.FINISH_MANY, refund_store.FINISH_MANY_ARGUMENTS, "'{}'")
    finally:
        await writer.close()
        pool.terminate()
    assert "refunds_in_flight" not in plan
    assert "Index Cond: (id = ANY ($1))" in scan_conditions(plan, "on refunds r")
    # By their primary keys: joined to the batch, a plan made on an empty table looked payments up by id in
    # payments_merchant_created, which leads with the merchant (the whole index for each).
    assert "using payments_pkey on payments p" in plan and "payments_merchant_created" not in plan, plan
    payments = scan_conditions(plan, "on payments p")
    assert payments and payments[0].startswith("Index Cond: ((id = ANY ($3))"), plan
    assert "using idempotency_keys_pkey on idempotency_keys k" in plan, plan
    keys = scan_conditions(plan, "on idempotency_keys k")
    assert keys and keys[0].startswith("Index Cond: ((merchant_id = d"), plan


WRITTEN = {
    "begin": (BEGIN_PAYMENTS, 1),
    "finish": (FINISH_PAYMENTS, FINISH_PAYMENTS_ARGUMENTS),
    "refund_finish": (refund_store.FINISH_MANY, refund_store.FINISH_MANY_ARGUMENTS),
}


@pytest.mark.parametrize("name", WRITTEN)
async def test_a_writer_statement_is_planned_once_a_session(stack, name):
    # Left to choose, Postgres planned the refunds' finish afresh on a third of its calls; the writer's
    # sessions keep one plan a statement (the generic one the tests above check).
    query, arguments = WRITTEN[name]
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        session = writer.idle[0]
        for _ in range(8):
            async with session.transaction():
                await session.execute(query, *[None] * arguments)
        generic, custom = await session.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", query)
    finally:
        await writer.close()
        pool.terminate()
    assert (generic >= 1, custom) == (True, 0)


@pytest.mark.parametrize("name", WRITTEN)
async def test_without_its_sessions_the_writer_plans_as_its_sessions_do(stack, name):
    # No session of its own (not started, or all lost with Postgres): the statement goes to a pooled
    # connection, which keeps the plan it makes there, and a writer session it becomes later would use it.
    query, arguments = WRITTEN[name]
    pool = await store_pool.create_pool(stack.database_url, 1)
    writer = PaymentWriter(pool)
    try:
        for _ in range(8):
            await writer._fetch(query, [None] * arguments, 1)
        async with pool.acquire() as conn:
            custom = await conn.fetchval(
                "SELECT custom_plans FROM pg_prepared_statements WHERE statement = $1", query)
            settings = (await conn.fetchval("SHOW enable_seqscan"), await conn.fetchval("SHOW plan_cache_mode"))
    finally:
        pool.terminate()
    assert (custom, settings) == (0, ("on", "auto"))


async def test_a_session_given_back_while_cancelled_is_back_in_the_pool(stack):
    pool = await store_pool.create_pool(stack.database_url, 1)
    writer = PaymentWriter(pool)
    try:
        session = await writer._session()
        giving_back = asyncio.get_running_loop().create_task(writer._give_back(session))
        await asyncio.sleep(0)                      # its RESET is sent
        giving_back.cancel()                        # a worker stopping
        with pytest.raises(asyncio.CancelledError):
            await giving_back
        async with asyncio.timeout(5):
            async with pool.acquire() as conn:      # the pool's only connection, or a new one in its place
                assert await conn.fetchval("SHOW enable_seqscan") == "on"
    finally:
        pool.terminate()


async def settings_of(conns) -> list[str]:
    return [await conn.fetchval("SHOW enable_seqscan") for conn in conns]


async def test_sessions_go_back_to_the_pool_without_the_writer_setting(stack):
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        session = writer.idle.pop()
        pid = session.get_server_pid()
        await writer._give_back(session)            # as after a failed batch, or at close
        others = [await pool.acquire() for _ in range(pool.get_max_size() - len(writer.idle))]
        try:
            settings = {conn.get_server_pid(): (await conn.fetchval("SHOW enable_seqscan"),
                                                await conn.fetchval("SHOW plan_cache_mode")) for conn in others}
        finally:
            for conn in others:
                await pool.release(conn)
        assert settings[pid] == ("on", "auto") and set(settings.values()) == {("on", "auto")}
    finally:
        await writer.close()
        pool.terminate()                    # no wait on a session a failing close() kept


async def test_a_timed_out_batch_keeps_the_writer_sessions(stack):
    # A short command timeout stands in for a batch stuck behind a lock or a stalled database; the release
    # hook is the switch's own, which resets nothing.
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=8, command_timeout=0.5,
                                     init=store_pool.init_connection, reset=store_pool.keep_session)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        with pytest.raises(TimeoutError):
            await writer._fetch("SELECT pg_sleep(2)", [], 1)
        assert await settings_of(writer.idle) == ["off"] * writer.sessions_wanted
    finally:
        await writer.close()
        pool.terminate()                    # no wait on a session a failing close() kept


async def test_close_survives_a_session_that_died(stack):
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        dead = writer.idle[0]
        async with pool.acquire() as admin:
            await admin.execute("SELECT pg_terminate_backend($1)", dead.get_server_pid())
        await writer.close()                # must not raise, and must give every session back
        assert writer.idle == []
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        pool.terminate()                    # no wait on a session a failing close() kept


async def test_a_session_the_server_closed_while_idle_is_not_used_again(stack):
    # When Postgres ends a connection (a restart, a failover, an administrator), asyncpg hands the dead
    # session back to the pool by itself; the writer must not run its next batch on what it still holds.
    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        ended = list(writer.idle)
        async with pool.acquire() as admin:
            for session in ended:
                await admin.execute("SELECT pg_terminate_backend($1)", session.get_server_pid())
        for _ in range(100):                            # the sessions learn of their end in the background
            if not any(held is session for held in writer.idle for session in ended):
                break
            await asyncio.sleep(0.05)
        rows = await writer._fetch("SELECT 1", [], 1)
        assert [row[0] for row in rows] == [1]
        for _ in range(100):                            # the fresh sessions open in the background
            if len(writer.idle) == writer.sessions_wanted:
                break
            await asyncio.sleep(0.05)
        assert await settings_of(writer.idle) == ["off"] * writer.sessions_wanted   # fresh writer sessions
    finally:
        await writer.close()
        pool.terminate()


async def test_the_write_ahead_batch_keeps_every_value_as_sent(stack):
    # The batch travels as one JSON parameter: text with quotes, backslashes, newlines and non-ASCII, every
    # byte value, NULLs, nested JSON and microsecond timestamps must all land as they were.
    from datetime import UTC, datetime, timedelta

    from switch.common.ids import new_id
    from switch.store.records import FraudRecord, PaymentRecord

    pool = await store_pool.create_pool(stack.database_url, 8)
    writer = PaymentWriter(pool)
    await writer.start()
    merchant = new_id("acct")
    now = datetime(2026, 12, 6, 5, 20, 31, 123456, tzinfo=UTC)
    odd = 'a "quoted" \\ back\nslash, ünïcödé ✓ and \t tab'
    fraud = FraudRecord(decision="review", risk_score=71, risk_level="elevated", rule="review if :amount: > 1",
                        reasons=("rule",), policy_version=3)
    payments = [
        PaymentRecord(id=new_id("pay"), merchant_id=merchant, status="processing", amount=2**40, currency="eur",
                      capture_method="manual", card_token="tok_x", card_brand="visa", card_last4="4242",
                      card_exp_month=12, card_exp_year=2031, network="visa", terminal_id="T0000001",
                      stan="000001", rrn="634012000001", transmitted_at="1206052031", description=odd,
                      statement_descriptor="SHOP* ÜBER", metadata={"note": odd, "ключ": "значение"},
                      card_fingerprint="fp_1", fraud=fraud, review_status="open",
                      deadline_at=now + timedelta(seconds=30), created_at=now),
        PaymentRecord(id=new_id("pay"), merchant_id=merchant, status="processing", amount=1, currency="usd",
                      capture_method="automatic", card_token="tok_y", card_brand="mastercard", card_last4="4444",
                      card_exp_month=1, card_exp_year=2030, network="mastercard", terminal_id="T0000001",
                      stan="000002", rrn="634012000002", transmitted_at="1206052031", deadline_at=now,
                      created_at=now),
    ]
    try:
        await pool.execute("INSERT INTO merchants (id, name) VALUES ($1, 'json batch')", merchant)
        answers = await asyncio.gather(
            writer.begin(payments[0], "key-1", bytes(range(256)), bytes(range(255, -1, -1))),
            writer.begin(payments[1], "key-2", b"\x00", None))
        assert answers == [True, True]
        rows = {row["id"]: row for row in await pool.fetch(
            "SELECT p.*, k.fingerprint AS key_fingerprint FROM payments p JOIN idempotency_keys k "
            "ON k.payment_id = p.id WHERE p.merchant_id = $1", merchant)}
        first, second = rows[payments[0].id], rows[payments[1].id]
        assert first["description"] == odd and first["statement_descriptor"] == "SHOP* ÜBER"
        assert first["amount"] == 2**40 and first["created_at"] == now
        assert first["deadline_at"] == now + timedelta(seconds=30)
        assert first["key_fingerprint"] == bytes(range(256)) and first["signals"] == bytes(range(255, -1, -1))
        assert first["metadata"] == {"note": odd, "ключ": "значение"}     # the pool decodes jsonb
        assert msgspec.convert(first["fraud"], FraudRecord) == fraud
        assert first["review_status"] == "open" and first["card_exp_year"] == 2031
        assert first["idempotency_key"] == "key-1" and second["idempotency_key"] == "key-2"   # for recovery
        assert second["description"] is None and second["fraud"] is None and second["signals"] is None
        assert second["key_fingerprint"] == b"\x00" and second["metadata"] == {}
        # A key already taken writes nothing and answers False.
        assert await writer.begin(payments[1], "key-2", b"\x00", None) is False
    finally:
        await writer.close()
        pool.terminate()                    # no wait on a session a failing close() kept


@pytest.mark.parametrize("name", ["claim", "acknowledged"])
async def test_the_outbox_reaches_its_rows_by_key(stack, name):
    # The outbox keeps every row it sent; a plan made on a new stack must not read them all on each pass.
    from switch.store.outbox import _ACKNOWLEDGED, _CLAIM

    query, value = (_CLAIM, "1") if name == "claim" else (_ACKNOWLEDGED, "'{1}'")
    pool = await store_pool.create_pool(stack.database_url, 2, server_settings=KEYED_ONLY)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE outbox_probe AS {query}")
            rows = await conn.fetch(f"EXPLAIN EXECUTE outbox_probe({value}, {value})")
            await conn.execute("DEALLOCATE outbox_probe")
    finally:
        await pool.close()
    lines = [row[0] for row in rows]
    scans = [n for n, line in enumerate(lines) if "Scan" in line and " on network_outbox" in line]
    assert scans, lines
    for n in scans:                           # an index scan's condition, or a bitmap scan's recheck of one
        assert "Seq Scan" not in lines[n], "\n".join(lines)
        assert "Index Cond" in lines[n + 1] or "Recheck Cond" in lines[n + 1], "\n".join(lines)


async def _events_plans(conn) -> list[str]:
    """The plans of webhook delivery's lease and fetch, and of the backlog sample, which read the events past
    each webhook cursor, made where statistics say every event is one merchant's and the cursor is at the
    start, in a transaction rolled back after."""
    from switch.store.backlog import BACKLOG
    from switch.store.webhooks import BEHIND_COUNT_MAX, FETCH, LEASE

    # The sample's bound, lowered below what the statistics expect past the cursor, as it is in a soak
    # (its bound of 100,000 against a third of 700,000 events).
    sample = BACKLOG.replace(f"LIMIT {BEHIND_COUNT_MAX}", "LIMIT 1000")
    assert sample != BACKLOG

    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("INSERT INTO merchants (id, name) VALUES ('acct_plan_probe', 'plan probe')")
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret, cursor_xid) "
            "VALUES ('we_plan_probe', 'acct_plan_probe', 'https://example.test/hook', '{*}', 'whsec_x', 0)")
        # Each with 300 bytes of data, as a payment's outcome is about.
        await conn.execute("INSERT INTO events (merchant_id, type, object_id, data) SELECT 'acct_plan_probe', "
                           "'payment.succeeded', 'pay_' || n, convert_to(repeat('x', 300), 'UTF8') "
                           "FROM generate_series(1, 20000) n")
        await conn.execute("ANALYZE events")
        plans = []
        for query, arguments in ((LEASE, "('w', 5, 30)"), (FETCH, "('{we_plan_probe}', '{0}', '{0}', '{100}')"),
                                 (sample, "")):
            await conn.execute(f"PREPARE events_probe AS {query}")
            plans.append("\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE events_probe{arguments}")))
            await conn.execute("DEALLOCATE events_probe")
        return plans
    finally:
        await transaction.rollback()


async def test_the_events_past_a_cursor_are_read_by_key(stack):
    # Once most events are one merchant's, a plan can read them from the oldest on. The lease asks for the
    # first event past the cursor in the cursor's order, as the fetch asks for a batch: each is a probe of
    # events_delivery. The lease's EXISTS before it planned a sequential scan of the events here. The backlog
    # sample counts them in the same order: unordered, it read every event, twice, every 5 s on each worker.
    conn = await asyncpg.connect(stack.database_url)
    try:
        plans = await _events_plans(conn)
    finally:
        await conn.close()
    for plan in plans:
        assert "Seq Scan on events" not in plan and "events_delivery" in plan, plan


async def _open(pool_of: str, url: str) -> asyncpg.Pool:
    from vault.server import create_pool as create_vault_pool
    if pool_of == "vault":
        return await create_vault_pool(url, 1)
    return await store_pool.create_pool(url, 1, server_settings=KEYED_ONLY if pool_of == "outbox" else None)


@pytest.mark.parametrize("pool_of", ["switch", "outbox", "vault"])
async def test_pooled_sessions_never_compile_a_statement(stack, pool_of):
    # JIT compiles any statement estimated above jit_above_cost, however few rows it reads: the backlog
    # sample took 35-72 ms a run, nearly all of it compiling. Here every statement is above the bar.
    plain = await asyncpg.connect(stack.database_url)
    try:
        if not await plain.fetchval("SELECT pg_jit_available()"):
            pytest.skip("this Postgres has no JIT to turn off")
    finally:
        await plain.close()
    pool = await _open(pool_of, stack.database_url)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET jit_above_cost = 0")
            plan = [row[0] for row in await conn.fetch(
                "EXPLAIN (ANALYZE) SELECT sum(g) FROM generate_series(1, 1000) AS g")]
    finally:
        await pool.close()
    assert not any(line.startswith("JIT") for line in plan), plan
