"""The payment lifecycle over real HTTP, Postgres, Redis, vault and the simulator."""

from __future__ import annotations

import re

import pytest

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import MASTERCARD_OK, VISA_DECLINE, VISA_INSUFFICIENT, key, payment

pytestmark = pytest.mark.integration


async def test_authorize_capture_refund(api: Client, stack, db) -> None:
    created = await api.request("POST", "/v1/payments", payment(5000), idempotency_key=key())
    assert created.status == 200, created.body
    body = created.json()
    assert body["status"] == "requires_capture"
    assert body["amount_capturable"] == 5000
    card = body["payment_method"]["card"]
    assert re.fullmatch("[0-9a-f]{16}", card.pop("fingerprint"))     # keyed per merchant, never the PAN
    assert card == {"brand": "visa", "last4": "4242", "exp_month": 11, "exp_year": 2031}
    assert body["authorization_code"]

    captured = await api.request("POST", f"/v1/payments/{body['id']}/capture", {}, idempotency_key=key())
    assert captured.status == 200, captured.body
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_received"] == 5000

    refund = await api.request("POST", "/v1/refunds", {"payment": body["id"], "amount": 1500}, idempotency_key=key())
    assert refund.status == 200, refund.body
    assert refund.json()["status"] == "succeeded"
    fetched = (await api.request("GET", f"/v1/payments/{body['id']}")).json()
    assert (fetched["amount_received"], fetched["amount_refunded"]) == (5000, 1500)

    events = await db.fetch("SELECT type, to_status FROM payment_events WHERE payment_id = $1 ORDER BY id", body["id"])
    assert [e["type"] for e in events] == ["payment.created", "authorization.approved", "payment.captured",
                                           "refund.requested", "refund.succeeded"]
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", body["id"])
    records = simulator(stack, f"/records?rrn={rrn}")
    assert any(record["mti"] == "0100" for record in records["records"])


async def test_automatic_capture_is_a_sale(api: Client) -> None:
    created = await api.request("POST", "/v1/payments", payment(2500, MASTERCARD_OK, "automatic"),
                                idempotency_key=key())
    assert created.status == 200, created.body
    body = created.json()
    assert (body["status"], body["amount_received"], body["network"]) == ("succeeded", 2500, "mastercard")


@pytest.mark.parametrize(("number", "decline_code"), [(VISA_DECLINE, "do_not_honor"),
                                                       (VISA_INSUFFICIENT, "insufficient_funds")])
async def test_decline_is_402_card_error(api: Client, db, number: str, decline_code: str) -> None:
    response = await api.request("POST", "/v1/payments", payment(1200, number), idempotency_key=key())
    assert response.status == 402
    error = response.json()["error"]
    assert (error["type"], error["decline_code"]) == ("card_error", decline_code)
    assert error["request_id"].startswith("req_")
    status = await db.fetchval("SELECT status FROM payments WHERE id = $1", error["payment_id"])
    assert status == "failed"


async def test_capture_twice_is_rejected(api: Client) -> None:
    body = (await api.request("POST", "/v1/payments", payment(800), idempotency_key=key())).json()
    first = await api.request("POST", f"/v1/payments/{body['id']}/capture", {}, idempotency_key=key())
    second = await api.request("POST", f"/v1/payments/{body['id']}/capture", {}, idempotency_key=key())
    assert first.status == 200
    assert second.status == 400
    assert second.json()["error"]["code"] == "payment_unexpected_state"


async def test_partial_capture_and_cancel(api: Client) -> None:
    body = (await api.request("POST", "/v1/payments", payment(1000), idempotency_key=key())).json()
    captured = await api.request("POST", f"/v1/payments/{body['id']}/capture", {"amount_to_capture": 600},
                                 idempotency_key=key())
    assert captured.json()["amount_received"] == 600
    other = (await api.request("POST", "/v1/payments", payment(700), idempotency_key=key())).json()
    canceled = await api.request("POST", f"/v1/payments/{other['id']}/cancel", {}, idempotency_key=key())
    assert canceled.status == 200
    assert canceled.json()["status"] == "canceled"


async def test_a_partial_capture_writes_each_of_its_rows_once(api: Client, db) -> None:
    # A capture's writes go as one statement (switch.store.payments.write_captured): every row, as the
    # answer says, and the key answers a retry with the same bytes.
    from switch.payments import outcome as outcomes

    body = (await api.request("POST", "/v1/payments", payment(1000), idempotency_key=key())).json()
    capture_key = key()
    captured = await api.request("POST", f"/v1/payments/{body['id']}/capture", {"amount_to_capture": 600},
                                 idempotency_key=capture_key)
    assert captured.status == 200, captured.body
    answer = captured.json()
    assert (answer["status"], answer["amount_received"], answer["amount_capturable"]) == ("succeeded", 600, 0)
    row = await db.fetchrow("SELECT status, amount_received, amount_capturable, updated_at > created_at AS touched "
                            "FROM payments WHERE id = $1", body["id"])
    assert tuple(row) == ("succeeded", 600, 0, True)
    change = await db.fetch("SELECT from_status, to_status, amount FROM payment_events "
                            "WHERE payment_id = $1 AND type = 'payment.captured'", body["id"])
    assert [tuple(c) for c in change] == [("requires_capture", "succeeded", 600)]
    advice = await db.fetch("SELECT kind, original_mti, amount, original_amount, refund_id FROM network_outbox "
                            "WHERE payment_id = $1", body["id"])
    assert [tuple(a) for a in advice] == [("capture_advice", "0100", 600, 1000, None)]
    entries = await db.fetch("SELECT posting_id, amount, currency FROM ledger_entries WHERE payment_id = $1 "
                             "ORDER BY posting_id, amount", body["id"])
    assert [e["posting_id"] for e in entries] == [f"capture:{body['id']}"] * 2 + [f"fee:{body['id']}"] * 2
    assert sum(e["amount"] for e in entries) == 0 and {e["currency"] for e in entries} == {"usd"}
    assert sorted(e["amount"] for e in entries if e["posting_id"].startswith("capture:")) == [-600, 600]
    event = await db.fetchrow("SELECT data FROM events WHERE object_id = $1 AND type = 'payment.captured'",
                              body["id"])
    stored = await db.fetchrow("SELECT outcome, payment_id, finished_at IS NOT NULL AS finished "
                               "FROM idempotency_keys WHERE idempotency_key = $1", capture_key)
    assert stored["payment_id"] == body["id"] and stored["finished"]
    assert event["data"] == stored["outcome"]
    kept = outcomes.decode(stored["outcome"]).payment
    assert kept is not None and (kept.status, kept.amount_received, kept.amount_capturable) == ("succeeded", 600, 0)
    again = await api.request("POST", f"/v1/payments/{body['id']}/capture", {"amount_to_capture": 600},
                              idempotency_key=capture_key)
    assert again.status == 200 and again.json() == answer


async def test_a_refunds_reservation_writes_each_of_its_rows_once(api: Client, db) -> None:
    # The reservation goes as one statement (switch.store.refunds.insert_reservation); the refund.created
    # event carries the pending refund as written.
    from switch.payments import outcome as outcomes

    body = (await api.request("POST", "/v1/payments", payment(2000, capture_method="automatic"),
                              idempotency_key=key())).json()
    refund = await api.request("POST", "/v1/refunds", {"payment": body["id"], "amount": 700}, idempotency_key=key())
    assert refund.status == 200, refund.body
    refund_id = refund.json()["id"]
    assert await db.fetchval("SELECT amount_refunded FROM payments WHERE id = $1", body["id"]) == 700
    changes = await db.fetch("SELECT type, from_status, to_status, amount FROM payment_events WHERE payment_id = $1 "
                             "AND type LIKE 'refund.%' ORDER BY id", body["id"])
    assert [tuple(c) for c in changes] == [("refund.requested", "succeeded", "succeeded", 700),
                                           ("refund.succeeded", "succeeded", "succeeded", 700)]
    row = await db.fetchrow("SELECT merchant_id, amount, currency, status, idempotency_key IS NOT NULL AS keyed, "
                            "created_at, deadline_at > created_at AS deadline_later FROM refunds WHERE id = $1",
                            refund_id)
    assert (row["amount"], row["currency"], row["status"], row["keyed"], row["deadline_later"]) == (
        700, "usd", "succeeded", True, True)
    data = await db.fetchval("SELECT data FROM events WHERE object_id = $1 AND type = 'refund.created'", refund_id)
    created = outcomes.decode(data).refund
    assert created is not None
    assert (created.id, created.payment_id, created.merchant_id, created.amount, created.status) == (
        refund_id, body["id"], row["merchant_id"], 700, "pending")
    assert created.created_at == row["created_at"]


async def test_a_declined_refund_gives_its_reservation_back_and_answers_its_key(api: Client, stack, db) -> None:
    # A refund's finish goes as one statement (switch.store.refunds.write_finished): on a decline, the
    # reservation is released, the failure recorded once, no ledger entry written, and the key answered.
    from switch.payments import outcome as outcomes

    body = (await api.request("POST", "/v1/payments", payment(2000, capture_method="automatic"),
                              idempotency_key=key())).json()
    network = await db.fetchval("SELECT network FROM payments WHERE id = $1", body["id"])
    refund_key = key()
    simulator(stack, "/behaviour", {"network": network, "error_rate": 1.0, "error_code": "05"})
    try:
        refund = await api.request("POST", "/v1/refunds", {"payment": body["id"], "amount": 700},
                                   idempotency_key=refund_key)
    finally:
        simulator(stack, "/behaviour", {"network": network, "error_rate": 0.0})
    answered = refund.json()
    assert refund.status == 200 and answered["status"] == "failed", refund.body      # as Stripe answers it
    refund_id = answered["id"]
    row = await db.fetchrow("SELECT status, failure_code, response_code FROM refunds WHERE id = $1", refund_id)
    assert tuple(row) == ("failed", "declined", "05")
    assert await db.fetchval("SELECT amount_refunded FROM payments WHERE id = $1", body["id"]) == 0
    changes = await db.fetch("SELECT type, amount, response_code FROM payment_events WHERE payment_id = $1 "
                             "AND type LIKE 'refund.%' ORDER BY id", body["id"])
    assert [tuple(c) for c in changes] == [("refund.requested", 700, None), ("refund.failed", 700, "05")]
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE posting_id = $1", f"refund:{refund_id}") == 0
    assert await db.fetchval("SELECT count(*) FROM network_outbox WHERE refund_id = $1", refund_id) == 0
    data = await db.fetchval("SELECT data FROM events WHERE object_id = $1 AND type = 'refund.failed'", refund_id)
    failed = outcomes.decode(data).refund
    assert failed is not None and (failed.status, failed.failure_code, failed.amount) == ("failed", "declined", 700)
    stored = await db.fetchval("SELECT outcome FROM idempotency_keys WHERE idempotency_key = $1", refund_key)
    assert outcomes.decode(stored).refund == failed
    again = await api.request("POST", "/v1/refunds", {"payment": body["id"], "amount": 700}, idempotency_key=refund_key)
    assert again.status == 200 and again.json() == answered


async def test_concurrent_captures_advices_are_each_acknowledged_with_the_networks_code(api: Client, db) -> None:
    # The outbox acknowledges what one sending pass sent in one statement: each row gets its own code.
    import asyncio

    bodies = [(await api.request("POST", "/v1/payments", payment(300 + n), idempotency_key=key())).json()
              for n in range(6)]
    captures = await asyncio.gather(*(api.request("POST", f"/v1/payments/{b['id']}/capture", {},
                                                  idempotency_key=key()) for b in bodies))
    assert [c.status for c in captures] == [200] * 6
    ids = [b["id"] for b in bodies]
    for _ in range(100):                       # bounded: 10 s
        rows = await db.fetch("SELECT payment_id, response_code, acknowledged_at FROM network_outbox "
                              "WHERE payment_id = ANY($1::text[])", ids)
        if len(rows) == 6 and all(r["acknowledged_at"] is not None for r in rows):
            break
        await asyncio.sleep(0.1)
    assert sorted((r["payment_id"], r["response_code"]) for r in rows) == sorted((i, "00") for i in ids)
    assert all(r["acknowledged_at"] is not None for r in rows)


async def test_other_merchants_payment_is_404(api: Client, stack) -> None:
    body = (await api.request("POST", "/v1/payments", payment(300), idempotency_key=key())).json()
    other_key = stack.seed_merchant("other-shop")
    response = await api.request("GET", f"/v1/payments/{body['id']}", api_key=other_key)
    assert response.status == 404
    assert response.json()["error"]["code"] == "resource_missing"


async def test_list_paginates_newest_first(api: Client, stack) -> None:
    merchant_key = stack.seed_merchant("list-shop")
    ids = []
    for amount in (101, 102, 103):
        response = await api.request("POST", "/v1/payments", payment(amount), idempotency_key=key(),
                                     api_key=merchant_key)
        ids.append(response.json()["id"])
    page = (await api.request("GET", "/v1/payments?limit=2", api_key=merchant_key)).json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = (await api.request("GET", f"/v1/payments?limit=2&starting_after={ids[1]}", api_key=merchant_key)).json()
    assert [p["id"] for p in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False


async def test_a_partial_approval_is_declined_and_its_authorization_reversed(api: Client, stack, db) -> None:
    # An issuer that approves part of the amount (39 = 10) holds that part; the switch declines partial
    # approvals, so it reverses the authorization. An ordinary decline is not reversed.
    answers = {}
    for code in ("10", "05"):
        simulator(stack, "/behaviour", {"network": "visa", "error_rate": 1.0, "error_code": code})
        try:
            answers[code] = await api.request("POST", "/v1/payments", payment(2000), idempotency_key=key())
        finally:
            simulator(stack, "/behaviour", {"network": "visa", "error_rate": 0.0})
    reversals = {}
    for code, answer in answers.items():
        assert answer.status == 402, answer.body
        payment_id = answer.json()["error"]["payment_id"]
        row = await db.fetchrow("SELECT status, response_code FROM payments WHERE id = $1", payment_id)
        assert tuple(row) == ("failed", code)
        reversals[code] = await db.fetchval("SELECT count(*) FROM network_outbox WHERE payment_id = $1 "
                                            "AND kind = 'reversal'", payment_id)
    assert reversals == {"10": 1, "05": 0}
