"""The payment lifecycle per card brand, partial capture and refund arithmetic, illegal transitions, and a
capture racing a cancel on the same payment (exactly one wins), checked against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration

# README's approving test cards: (number, brand, network the switch routes it to).
BRANDS = [
    ("4242424242424242", "visa", "visa"),
    ("5555555555554444", "mastercard", "mastercard"),
    ("378282246310005", "amex", "generic"),
    ("6011111111111117", "discover", "generic"),
    ("3566002020360505", "jcb", "generic"),
    ("36227206271667", "diners", "generic"),
    ("6200000000000005", "unionpay", "generic"),
]
RACES = 25


async def post(api: Client, path: str, body: dict[str, Any]) -> Any:
    return await api.request("POST", path, body, idempotency_key=key())


def by_rrn(stack, rrn: str) -> dict[str, Any]:
    summary = simulator(stack, f"/summary?rrn={rrn}")
    assert summary["charged_once"] and summary["every_hold_resolved"], summary
    return dict(summary["by_rrn"][rrn])


async def wait_acknowledged(db, payment_id: str) -> None:
    async with asyncio.timeout(30):
        while await db.fetchval("SELECT count(*) FROM network_outbox WHERE payment_id = $1 "
                                "AND acknowledged_at IS NULL", payment_id):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("number", "brand", "network"), BRANDS, ids=[b[1] for b in BRANDS])
async def test_full_lifecycle_per_brand(api: Client, stack, db, number: str, brand: str, network: str) -> None:
    created = await post(api, "/v1/payments", payment(6000, number))
    assert created.status == 200, created.body
    body = created.json()
    assert (body["status"], body["network"], body["amount_capturable"]) == ("requires_capture", network, 6000)
    assert body["payment_method"]["card"]["brand"] == brand
    assert body["payment_method"]["card"]["last4"] == number[-4:]
    captured = await post(api, f"/v1/payments/{body['id']}/capture", {})
    assert (captured.status, captured.json()["status"], captured.json()["amount_received"]) == (200, "succeeded", 6000)
    refund = await post(api, "/v1/refunds", {"payment": body["id"]})
    assert (refund.status, refund.json()["status"], refund.json()["amount"]) == (200, "succeeded", 6000)
    await wait_acknowledged(db, body["id"])

    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", body["id"])
    records = simulator(stack, f"/records?rrn={rrn}")["records"]
    assert {(r["network"], r["mti"], r["field39"]) for r in records} == {(network, "0100", "00"),
                                                                        (network, "0220", "00")}
    assert (by_rrn(stack, rrn)["charged_minor"], by_rrn(stack, rrn)["held_minor"]) == (6000, 0)
    refund_rrn = await db.fetchval("SELECT rrn FROM refunds WHERE id = $1", refund.json()["id"])
    assert by_rrn(stack, refund_rrn)["refunded_minor"] == 6000


async def test_partial_capture_and_several_partial_refunds(api: Client, stack, db) -> None:
    body = (await post(api, "/v1/payments", payment(10_000))).json()
    captured = (await post(api, f"/v1/payments/{body['id']}/capture", {"amount_to_capture": 7300})).json()
    assert (captured["amount_received"], captured["amount_capturable"]) == (7300, 0)
    for amount, refunded in ((1000, 1000), (2500, 3500)):
        refund = await post(api, "/v1/refunds", {"payment": body["id"], "amount": amount})
        assert (refund.status, refund.json()["amount"]) == (200, amount)
        assert (await api.request("GET", f"/v1/payments/{body['id']}")).json()["amount_refunded"] == refunded
    too_much = await post(api, "/v1/refunds", {"payment": body["id"], "amount": 3801})
    assert (too_much.status, too_much.json()["error"]["code"]) == (400, "amount_too_large")
    rest = await post(api, "/v1/refunds", {"payment": body["id"]})          # no amount: what remains
    assert (rest.status, rest.json()["amount"]) == (200, 3800)
    again = await post(api, "/v1/refunds", {"payment": body["id"], "amount": 1})
    assert (again.status, again.json()["error"]["code"]) == (400, "charge_already_refunded")
    final = (await api.request("GET", f"/v1/payments/{body['id']}")).json()
    assert (final["amount_received"], final["amount_refunded"], final["status"]) == (7300, 7300, "succeeded")
    await wait_acknowledged(db, body["id"])
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", body["id"])
    assert (by_rrn(stack, rrn)["charged_minor"], by_rrn(stack, rrn)["held_minor"]) == (7300, 0)
    refund_rrns = [row["rrn"] for row in await db.fetch("SELECT rrn FROM refunds WHERE payment_id = $1", body["id"])]
    assert sum(by_rrn(stack, rrn)["refunded_minor"] for rrn in refund_rrns) == 7300


async def test_illegal_transitions_are_refused_and_change_nothing(api: Client, db) -> None:
    canceled = (await post(api, "/v1/payments", payment(900))).json()
    assert (await post(api, f"/v1/payments/{canceled['id']}/cancel", {})).status == 200
    authorized = (await post(api, "/v1/payments", payment(800))).json()
    captured = (await post(api, "/v1/payments", payment(700))).json()
    assert (await post(api, f"/v1/payments/{captured['id']}/capture", {})).status == 200

    attempts = [
        (f"/v1/payments/{canceled['id']}/capture", {}, "payment_unexpected_state"),        # capture after cancel
        (f"/v1/payments/{captured['id']}/cancel", {}, "payment_unexpected_state"),         # cancel after capture
        ("/v1/refunds", {"payment": authorized["id"]}, "payment_unexpected_state"),        # refund before capture
        ("/v1/refunds", {"payment": captured["id"], "amount": 701}, "amount_too_large"),    # above captured
        (f"/v1/payments/{authorized['id']}/capture", {"amount_to_capture": 801}, "amount_too_large"),
    ]
    before = {row["id"]: dict(row) for row in await db.fetch(
        "SELECT id, status, amount_capturable, amount_received, amount_refunded FROM payments WHERE id = ANY($1)",
        [canceled["id"], authorized["id"], captured["id"]])}
    for path, body, code in attempts:
        response = await post(api, path, body)
        assert response.status == 400, (path, response.body)
        assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("invalid_request_error", code)
    after = {row["id"]: dict(row) for row in await db.fetch(
        "SELECT id, status, amount_capturable, amount_received, amount_refunded FROM payments WHERE id = ANY($1)",
        list(before))}
    assert after == before
    assert await db.fetchval("SELECT count(*) FROM refunds WHERE payment_id = ANY($1)", list(before)) == 0
    assert (await post(api, f"/v1/payments/{authorized['id']}/cancel", {})).status == 200     # release its hold


async def test_a_capture_racing_a_cancel_has_exactly_one_winner(stack, db) -> None:
    clients = [Client(stack.switch_url, stack.api_key) for _ in range(2)]

    async def race(index: int) -> tuple[str, int, int]:
        created = await clients[0].request("POST", "/v1/payments", payment(1000 + index), idempotency_key=key())
        payment_id = created.json()["id"]
        capture, cancel = await asyncio.gather(
            clients[0].request("POST", f"/v1/payments/{payment_id}/capture", {}, idempotency_key=key()),
            clients[1].request("POST", f"/v1/payments/{payment_id}/cancel", {}, idempotency_key=key()))
        return payment_id, capture.status, cancel.status

    try:
        results = await asyncio.gather(*(race(index) for index in range(RACES)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    winners = {"capture": 0, "cancel": 0}
    for payment_id, capture_status, cancel_status in results:
        assert sorted((capture_status, cancel_status)) == [200, 400], (capture_status, cancel_status)
        winner = "capture" if capture_status == 200 else "cancel"
        winners[winner] += 1
        row = await db.fetchrow("SELECT status, amount, amount_received, rrn FROM payments WHERE id = $1", payment_id)
        assert row["status"] == ("succeeded" if winner == "capture" else "canceled")
        events = [e["type"] for e in await db.fetch("SELECT type FROM payment_events WHERE payment_id = $1",
                                                    payment_id)]
        assert events.count("payment.captured") + events.count("payment.canceled") == 1
        await wait_acknowledged(db, payment_id)
        outcome = by_rrn(stack, row["rrn"])
        assert outcome["charged_minor"] == (row["amount"] if winner == "capture" else 0)
    print("race winners:", winners)
