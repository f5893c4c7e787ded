"""Captures that arrive together share one transaction (switch.payments.locked):
each is checked against its payment as the batch holds it, the refused ones leave no key behind, and a
payment another transaction holds is handed back for the one-at-a-time way instead of waited for."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.httpclient import Client
from switch.payments import captures
from switch.payments.captures import CaptureRequest
from switch.payments.locked import LockedBatches, NotLocked, Refused
from switch.payments.results import Result
from switch.store import payments as payment_store
from switch.store import pool as store_pool
from switch.store.payments import Claim
from tests.integration.helpers import key, payment
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
        batches = captures.batches(pool)
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
        batches = captures.batches(pool)
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


PLANNED = {
    "claim_and_lock": (payment_store._CLAIM_AND_LOCK_MANY, payment_store.CLAIM_AND_LOCK_MANY_ARGUMENTS, "'{}'"),
    "capture": (payment_store._CAPTURED_MANY, payment_store.CAPTURED_MANY_ARGUMENTS, "NULL"),
}


@pytest.mark.parametrize("name", PLANNED)
async def test_a_batch_reaches_its_rows_by_key(stack, name) -> None:
    # Planned once per connection, often on a new, nearly empty database: the plan must not read whole
    # tables or indexes. On a pool of the sessions the worker gives its batches.
    query, arguments, placeholder = PLANNED[name]
    pool = await store_pool.create_pool(stack.database_url, 2, server_settings=LockedBatches.SESSION)
    try:
        async with pool.acquire() as conn:
            plan = await generic_plan(conn, query, arguments, placeholder)
    finally:
        await pool.close()
    if name == "claim_and_lock":
        assert scan_conditions(plan, "on payments")[-1] == "Index Cond: (id = ANY ($5))", plan
        return
    assert scan_conditions(plan, "on payments p")[-1] == "Index Cond: (id = ANY ($2))", plan
    assert scan_conditions(plan, "on idempotency_keys k ") == [       # each released key looked up
        "Index Cond: ((merchant_id = r.merchant_id) AND (idempotency_key = r.idempotency_key))"], plan
    assert scan_conditions(plan, "on idempotency_keys k_1") == [      # each capture's key looked up
        "Index Cond: ((merchant_id = i_1.merchant_id) AND (idempotency_key = i_1.idempotency_key))"]
