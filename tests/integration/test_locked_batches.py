"""Captures and refunds' reservations that arrive together share one transaction (switch.payments.locked,
switch.payments.changes): each is checked against its payment as the batch holds it, the refused ones leave no
key behind, and a payment another transaction holds is handed back for the one-at-a-time way instead of
waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from loadtest.httpclient import Client
from switch.payments.captures import CaptureRequest
from switch.payments.changes import Changes
from switch.payments.locked import LockedBatches, NotLocked, Refused
from switch.payments.reservations import RefundRequest
from switch.payments.results import Result
from switch.payments.trace import trace_for
from switch.store import payments as payment_store
from switch.store import pool as store_pool
from switch.store import refunds as refund_store
from switch.store.payments import Claim
from tests.integration.helpers import key, payment, shop
from tests.plans import generic_plan, scan_conditions

pytestmark = pytest.mark.integration


async def authorized(api: Client, amount: int) -> str:
    answer = (await api.request("POST", "/v1/payments", payment(amount), idempotency_key=key())).json()
    assert answer["status"] == "requires_capture", answer
    return answer["id"]


def request(merchant: str, payment_id: str, amount: int | None = None, idempotency_key: str = "") -> CaptureRequest:
    claim = Claim(merchant, idempotency_key or key("cap"), f"/v1/payments/{payment_id}/capture", b"fingerprint",
                  payment_id)
    return CaptureRequest(claim, f"req_{claim.idempotency_key}", amount)


async def test_captures_in_one_batch_are_each_answered_as_alone(api: Client, stack) -> None:
    first, too_large, partial, held = [await authorized(api, amount) for amount in (900, 500, 800, 700)]
    in_review = await authorized(api, 400)
    pool = await store_pool.create_pool(stack.database_url, 6, server_settings=LockedBatches.SESSION)
    try:
        merchant = await pool.fetchval("SELECT merchant_id FROM payments WHERE id = $1", first)
        requests = {
            "full": request(merchant, first),
            "again": request(merchant, first),                      # the same payment, another key
            "too_large": request(merchant, too_large, amount=501),
            "partial": request(merchant, partial, amount=300),
            "held": request(merchant, held),
            "missing": request(merchant, "pay_missing"),
            "other_merchant": request("acct_someone_else", partial),
        }
        requests["same_key"] = request(merchant, held, idempotency_key=requests["full"].claim.idempotency_key)
        requests["in_review"] = request(merchant, in_review)
        await pool.execute("UPDATE payments SET review_status = 'open' WHERE id = $1", in_review)   # as if held
        requests["used_key"] = request(merchant, too_large)               # its key has its row from before
        await pool.execute("INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, "
                           "fingerprint) VALUES ($1, $2, 'POST', '/v1/payments', 'x')", merchant,
                           requests["used_key"].claim.idempotency_key)
        batches = Changes(pool).batches
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", held)
            answers = dict(zip(requests, await asyncio.gather(
                *(batches.submit(r) for r in requests.values()), return_exceptions=True), strict=True))
        assert (batches.batches.batches, batches.batches.items) == (1, len(requests))

        def result(name: str) -> Result | None:
            answer = answers[name]
            assert isinstance(answer, Refused), (name, answer)
            return answer.outcome.result if answer.outcome else None

        assert answers["full"][0].payment.amount_received == 900
        assert answers["partial"][0].payment.amount_received == 300
        assert answers["partial"][0].payment.status == answers["full"][0].payment.status == "succeeded"
        assert result("again") is Result.PAYMENT_UNEXPECTED_STATE      # it saw the first capture's result
        assert result("too_large") is Result.AMOUNT_TOO_LARGE
        assert result("in_review") is Result.PAYMENT_IN_REVIEW
        assert result("same_key") is None                                # the key is the first request's
        assert result("used_key") is None
        # Not waited for, and left to the one-at-a-time way: a payment held elsewhere, none, another merchant's.
        assert all(isinstance(answers[name], NotLocked) for name in ("held", "missing", "other_merchant"))

        rows = {r["id"]: r for r in await pool.fetch(
            "SELECT id, status, amount_capturable, amount_received FROM payments WHERE id = ANY ($1)",
            [first, too_large, partial, held])}
        assert [tuple(rows[p].values())[1:] for p in (first, too_large, partial, held)] == [
            ("succeeded", 0, 900), ("requires_capture", 500, 0), ("succeeded", 0, 300), ("requires_capture", 700, 0)]
        # The used keys answer with their outcome; the refused ones and those handed back left no row.
        keys = {r["idempotency_key"]: r for r in await pool.fetch(
            "SELECT idempotency_key, payment_id, outcome FROM idempotency_keys WHERE idempotency_key = ANY ($1)",
            [r.claim.idempotency_key for r in requests.values()])}
        assert set(keys) == {requests["full"].claim.idempotency_key, requests["partial"].claim.idempotency_key,
                             requests["used_key"].claim.idempotency_key}
        assert keys[requests["used_key"].claim.idempotency_key]["outcome"] is None       # left as it was
        assert keys[requests["full"].claim.idempotency_key]["outcome"] == answers["full"][1]
        assert keys[requests["partial"].claim.idempotency_key]["payment_id"] == partial
        # Each capture's writes, once: its state change, its advice, its merchant event, its ledger posting.
        for table, column, condition in (
                ("payment_events", "payment_id", "type = 'payment.captured'"),
                ("network_outbox", "payment_id", "kind = 'capture_advice'"),
                ("events", "object_id", "type = 'payment.captured'")):
            counted = dict(await pool.fetch(f"SELECT {column}, count(*) FROM {table} WHERE {column} = ANY ($1) "
                                            f"AND {condition} GROUP BY 1", [first, too_large, partial, held]))
            assert counted == {first: 1, partial: 1}, table
        ledger = dict(await pool.fetch(
            "SELECT payment_id, sum(amount) FILTER (WHERE amount > 0) FROM ledger_entries "
            "WHERE payment_id = ANY ($1) AND posting_id = 'capture:' || payment_id GROUP BY 1", [first, partial]))
        assert ledger == {first: 900, partial: 300}
    finally:
        await pool.close()


async def test_a_key_another_transaction_is_writing_is_not_waited_for(api: Client, stack) -> None:
    # Redis lost the key's lock and another request is claiming the same key: the batch gives up after its
    # lock_timeout instead of waiting with its payments locked, and hands every request back (rolled back).
    ids = [await authorized(api, amount) for amount in (300, 400, 500)]
    pool = await store_pool.create_pool(stack.database_url, 4, server_settings=LockedBatches.SESSION)
    try:
        merchant = await pool.fetchval("SELECT merchant_id FROM payments WHERE id = $1", ids[0])
        requests = [request(merchant, payment_id) for payment_id in ids]
        batches = Changes(pool).batches
        async with pool.acquire() as other, other.transaction():
            await other.execute("INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, "
                                "request_path, fingerprint) VALUES ($1, $2, 'POST', '/p', 'x')", merchant,
                                requests[1].claim.idempotency_key)
            answers = await asyncio.gather(*(batches.submit(r) for r in requests), return_exceptions=True)
        assert all(isinstance(answer, NotLocked) for answer in answers), answers
        assert (batches.batches.batches, batches.batches.splits) == (1, 0)
        statuses = dict(await pool.fetch("SELECT id, status FROM payments WHERE id = ANY ($1)", ids))
        assert statuses == dict.fromkeys(ids, "requires_capture")
        claimed = [r.claim.idempotency_key for r in requests]
        left = await pool.fetch("SELECT idempotency_key FROM idempotency_keys WHERE merchant_id = $1 "
                                "AND idempotency_key = ANY ($2)", merchant, claimed)
        assert [row[0] for row in left] == [claimed[1]]     # the other transaction's; the batch's rolled back
    finally:
        await pool.close()


async def test_a_capture_of_a_held_payment_waits_for_it_over_http(api: Client, stack) -> None:
    # A batch skips the payment another transaction holds (asserted above); over HTTP the capture then goes
    # the one-at-a-time way, which waits for the row instead of answering.
    held = await authorized(api, 600)
    pool = await store_pool.create_pool(stack.database_url, 2)
    try:
        async with pool.acquire() as holder:
            async with holder.transaction():
                await holder.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", held)
                capturing = asyncio.ensure_future(api.request("POST", f"/v1/payments/{held}/capture", {},
                                                              idempotency_key=key()))
                await asyncio.sleep(0.5)
                assert not capturing.done()                         # waiting for the row, not refused
            answer = (await capturing).json()
        assert (answer["status"], answer["amount_received"]) == ("succeeded", 600)
    finally:
        await pool.close()


def refund(merchant: str, payment_id: str, amount: int | None, n: int) -> RefundRequest:
    claim = Claim(merchant, key("re"), "/v1/refunds", b"fingerprint", payment_id)
    now = datetime.now(UTC)
    # A deadline past the test session: recovery leaves these pending refunds alone.
    return RefundRequest(claim, f"req_{claim.idempotency_key}", amount, trace_for(987_000_000 + n), now,
                         "1206120000", now + timedelta(days=1))


async def test_refunds_in_one_batch_reserve_against_each_other(stack) -> None:
    async with shop(stack, "refund-batch") as client:
        sales = [(await client.request("POST", "/v1/payments", payment(amount, capture_method="automatic"),
                                       idempotency_key=key())).json() for amount in (1000, 500)]
    assert [sale["status"] for sale in sales] == ["succeeded", "succeeded"]
    sale, other = sales[0]["id"], sales[1]["id"]
    pool = await store_pool.create_pool(stack.database_url, 4, server_settings=LockedBatches.SESSION)
    try:
        merchant = await pool.fetchval("SELECT merchant_id FROM payments WHERE id = $1", sale)
        requests = {"first": refund(merchant, sale, 600, 1), "second": refund(merchant, sale, 300, 2),
                    "too_much": refund(merchant, sale, 200, 3), "the_rest": refund(merchant, other, None, 4)}
        batches = Changes(pool).batches
        answers = dict(zip(requests, await asyncio.gather(
            *(batches.submit(r) for r in requests.values()), return_exceptions=True), strict=True))
        assert (batches.batches.batches, batches.batches.splits) == (1, 0)
        too_much = answers.pop("too_much")
        assert isinstance(too_much, Refused) and too_much.outcome is not None
        assert too_much.outcome.result is Result.AMOUNT_TOO_LARGE      # 100 remained after the first two
        amounts = {name: answer[1].amount for name, answer in answers.items()}
        assert amounts == {"first": 600, "second": 300, "the_rest": 500}
        refunded = dict(await pool.fetch("SELECT id, amount_refunded FROM payments WHERE id = ANY ($1)", [sale, other]))
        assert refunded == {sale: 900, other: 500}                      # the batch's amounts summed by payment
        pending = dict(await pool.fetch("SELECT id, amount FROM refunds WHERE payment_id = ANY ($1) "
                                        "AND status = 'pending'", [sale, other]))
        assert pending == {answer[1].id: answer[1].amount for answer in answers.values()}
        created = await pool.fetchval("SELECT count(*) FROM events WHERE type = 'refund.created' "
                                      "AND object_id = ANY ($1)", list(pending))
        assert created == 3
        keys = await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1 "
                                   "AND idempotency_key = ANY ($2)", merchant,
                                   [r.claim.idempotency_key for r in requests.values()])
        assert keys == 3                     # the refused one's deleted by the reservations' statement
    finally:
        await pool.close()


async def test_a_refund_rides_the_captures_batch_and_sees_their_results(api: Client, stack) -> None:
    captured_first, refunded_first = await authorized(api, 900), await authorized(api, 500)
    pool = await store_pool.create_pool(stack.database_url, 4, server_settings=LockedBatches.SESSION)
    try:
        merchant = await pool.fetchval("SELECT merchant_id FROM payments WHERE id = $1", captured_first)
        requests = {"capture": request(merchant, captured_first), "refund": refund(merchant, captured_first, 400, 11),
                    "early_refund": refund(merchant, refunded_first, None, 12),
                    "late_capture": request(merchant, refunded_first, amount=200)}
        batches = Changes(pool).batches
        answers = dict(zip(requests, await asyncio.gather(
            *(batches.submit(r) for r in requests.values()), return_exceptions=True), strict=True))
        assert (batches.batches.batches, batches.batches.splits) == (1, 0)
        assert answers["capture"][0].payment.amount_received == 900
        found, pending = answers["refund"]
        assert (found.status, found.amount_received, pending.amount) == ("succeeded", 900, 400)
        early = answers["early_refund"]          # before its payment's capture: nothing captured to refund
        assert isinstance(early, Refused) and early.outcome is not None
        assert early.outcome.result is Result.PAYMENT_UNEXPECTED_STATE
        assert answers["late_capture"][0].payment.amount_received == 200
        rows = {r["id"]: tuple(r.values())[1:] for r in await pool.fetch(
            "SELECT id, status, amount_received, amount_refunded FROM payments WHERE id = ANY ($1)",
            [captured_first, refunded_first])}
        assert rows == {captured_first: ("succeeded", 900, 400), refunded_first: ("succeeded", 200, 0)}
        changes = [r["type"] for r in await pool.fetch(
            "SELECT type FROM payment_events WHERE payment_id = $1 ORDER BY id", captured_first)]
        assert changes[-2:] == ["payment.captured", "refund.requested"]
        keys = {r[0] for r in await pool.fetch(
            "SELECT idempotency_key FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = ANY ($2)",
            merchant, [r.claim.idempotency_key for r in requests.values()])}
        # The refused refund's key deleted by the captures' statement, the first of the batch's writes.
        assert keys == {requests[name].claim.idempotency_key for name in ("capture", "refund", "late_capture")}
    finally:
        await pool.close()


@asynccontextmanager
async def batch_session(stack) -> AsyncIterator[asyncpg.Connection]:
    """A session with the settings the worker gives its batches (LockedBatches.SESSION)."""
    pool = await store_pool.create_pool(stack.database_url, 1, server_settings=LockedBatches.SESSION)
    try:
        async with pool.acquire() as conn:
            yield conn
    finally:
        await pool.close()


PLANNED = {
    "claim_and_lock": (payment_store._CLAIM_AND_LOCK_MANY, payment_store.CLAIM_AND_LOCK_MANY_ARGUMENTS, "'{}'"),
    "capture": (payment_store._CAPTURED_MANY, payment_store.CAPTURED_MANY_ARGUMENTS, "NULL"),
    "reserve": (refund_store._RESERVE_MANY, refund_store.RESERVE_MANY_ARGUMENTS, "NULL"),
}


@pytest.mark.parametrize("name", PLANNED)
async def test_a_batch_reaches_its_rows_by_key(stack, name) -> None:
    # Planned once per connection, often on a new, nearly empty database: the plan must not read whole
    # tables or indexes. On a pool of the sessions the worker gives its batches.
    query, arguments, placeholder = PLANNED[name]
    async with batch_session(stack) as conn:
        plan = await generic_plan(conn, query, arguments, placeholder)
    if name == "claim_and_lock":
        assert scan_conditions(plan, "on payments")[-1] == "Index Cond: (id = ANY ($5))", plan
        return
    assert scan_conditions(plan, "on payments p")[-1] == "Index Cond: (id = ANY ($2))", plan
    assert scan_conditions(plan, "on idempotency_keys k ") == [       # each released key looked up
        "Index Cond: ((merchant_id = r.merchant_id) AND (idempotency_key = r.idempotency_key))"], plan
    if name == "reserve":
        return
    assert scan_conditions(plan, "on idempotency_keys k_1") == [      # each capture's key looked up
        "Index Cond: ((merchant_id = i_1.merchant_id) AND (idempotency_key = i_1.idempotency_key))"]


@pytest.mark.parametrize("name", PLANNED)
async def test_a_batch_statement_is_planned_once_a_session(stack, name) -> None:
    # Left to choose, Postgres planned the refunds' reservations afresh on every call (as long as the
    # statement took to run); the batches' sessions keep one plan a statement.
    query, arguments, _ = PLANNED[name]
    async with batch_session(stack) as conn:
        for _ in range(8):
            async with conn.transaction():
                await conn.execute(query, *[None] * arguments)
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", query)
    assert (generic >= 1, custom) == (True, 0)


async def test_refunds_finishing_together_are_one_statement_and_each_as_alone(stack) -> None:
    # The refunds' finishes group-commit (switch.store.writer): a success credits the ledger, a decline and
    # a timeout release their reservations (summed by payment), the timeout's 0200 is reversed, every key is
    # answered; a finish of a refund no longer pending writes nothing.
    from switch.outbox import items
    from switch.payments.states import RefundEvent
    from switch.payments.steps.fail import RefundOf, finish_refund
    from switch.store.writer import PaymentWriter

    async with shop(stack, "refund-finish") as client:
        answers = [(await client.request("POST", "/v1/payments", payment(amount, capture_method="automatic"),
                                         idempotency_key=key())).json() for amount in (1000, 500)]
    assert [answer["status"] for answer in answers] == ["succeeded", "succeeded"]
    sales = [answer["id"] for answer in answers]
    sale, other = sales
    locked_pool = await store_pool.create_pool(stack.database_url, 2, server_settings=LockedBatches.SESSION)
    pool = await store_pool.create_pool(stack.database_url, 8)            # the worker's, as the writer has it
    writer = PaymentWriter(pool)
    await writer.start()
    try:
        merchant, network, currency = await pool.fetchrow(
            "SELECT merchant_id, network, currency FROM payments WHERE id = $1", sale)
        requests = [refund(merchant, sale, 600, 21), refund(merchant, sale, 300, 22), refund(merchant, sale, 100, 23),
                    refund(merchant, other, 500, 24)]
        batches = Changes(locked_pool).batches
        approved, declined, timed_out, other_declined = [answer[1] for answer in await asyncio.gather(
            *(batches.submit(r) for r in requests))]
        of = {payment_id: RefundOf(payment_id, merchant, network, currency) for payment_id in sales}
        keys = [r.claim.idempotency_key for r in requests]
        trace = requests[2].trace
        reversal = items.reversal_of_refund(sale, network, timed_out.id, 100, trace.stan, trace.rrn,
                                            requests[2].transmitted_at)

        def finishing(pending, event, code, n, **more):
            return finish_refund(writer.finish_refund, pending, of[pending.payment_id], event, code, f"req_{n}",
                                 keys[n], **more)

        results = await asyncio.gather(finishing(approved, RefundEvent.APPROVED, "00", 0),
                                       finishing(declined, RefundEvent.DECLINED, "05", 1),
                                       finishing(timed_out, RefundEvent.TIMED_OUT, None, 2, reversal=reversal),
                                       finishing(other_declined, RefundEvent.DECLINED, "51", 3))
        assert (writer.refund_batches.batches, writer.refund_batches.splits) == (1, 0)
        assert [result[0].refund.status for result in results] == ["succeeded", "failed", "failed", "failed"]
        ids = [approved.id, declined.id, timed_out.id, other_declined.id]
        rows = {row["id"]: tuple(row)[1:] for row in await pool.fetch(
            "SELECT id, status, failure_code, response_code FROM refunds WHERE id = ANY ($1)", ids)}
        assert rows == {approved.id: ("succeeded", None, "00"), declined.id: ("failed", "declined", "05"),
                        timed_out.id: ("failed", "network_timeout", None),
                        other_declined.id: ("failed", "declined", "51")}
        refunded = dict(await pool.fetch("SELECT id, amount_refunded FROM payments WHERE id = ANY ($1)", sales))
        assert refunded == {sale: 600, other: 0}      # the failed ones' reservations released, two of one payment
        ledger = await pool.fetch("SELECT posting_id, amount FROM ledger_entries WHERE posting_id = ANY ($1) "
                                  "ORDER BY amount", [f"refund:{i}" for i in ids])
        assert [tuple(row) for row in ledger] == [(f"refund:{approved.id}", -600), (f"refund:{approved.id}", 600)]
        reversed_ = await pool.fetch("SELECT refund_id, payment_id, network, original_mti, processing_code, amount, "
                                     "original_amount, stan, rrn FROM network_outbox "
                                     "WHERE kind = 'reversal' AND refund_id = ANY ($1)", ids)
        assert [tuple(row) for row in reversed_] == [(timed_out.id, sale, network, "0200", "200000", 0, 100,
                                                      trace.stan, trace.rrn)]
        changes = sorted(tuple(row) for row in await pool.fetch(
            "SELECT payment_id, type, amount, response_code FROM payment_events WHERE payment_id = ANY ($1) "
            "AND type IN ('refund.succeeded', 'refund.failed')", sales))
        assert changes == sorted([(sale, "refund.succeeded", 600, "00"), (sale, "refund.failed", 300, "05"),
                                  (sale, "refund.failed", 100, None), (other, "refund.failed", 500, "51")])
        events = sorted(tuple(row) for row in await pool.fetch(
            "SELECT object_id, type FROM events WHERE object_id = ANY ($1) AND type <> 'refund.created'", ids))
        assert events == sorted([(approved.id, "refund.succeeded"), (declined.id, "refund.failed"),
                                 (timed_out.id, "refund.failed"), (other_declined.id, "refund.failed")])
        answered = await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1 "
                                       "AND idempotency_key = ANY ($2) AND outcome IS NOT NULL", merchant, keys)
        assert answered == 4
        again = await finishing(approved, RefundEvent.APPROVED, "00", 0)
        assert again is None                                   # no longer pending: nothing written again
        assert await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE posting_id = $1",
                                   f"refund:{approved.id}") == 2
        assert await pool.fetchval("SELECT count(*) FROM payment_events WHERE payment_id = $1 "
                                   "AND type = 'refund.succeeded'", sale) == 1
    finally:
        await writer.close()
        await pool.close()
        await locked_pool.close()
