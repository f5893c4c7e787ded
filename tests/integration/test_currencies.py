"""Currencies with minor-unit exponents other than 2: JPY (0) and BHD (3). Field 4 carries the amount in
the currency's minor units and field 49 its ISO 4217 numeric code, as the simulator records them."""

from __future__ import annotations

import pytest

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("currency", "numeric", "amount"), [("jpy", "392", 5000), ("bhd", "048", 12_345)])
async def test_amount_and_currency_on_the_wire(api: Client, stack, db, currency: str, numeric: str,
                                               amount: int) -> None:
    created = await api.request("POST", "/v1/payments", {**payment(amount), "currency": currency},
                                idempotency_key=key())
    assert created.status == 200, created.body
    body = created.json()
    assert (body["currency"], body["amount"], body["amount_capturable"]) == (currency, amount, amount)
    captured = await api.request("POST", f"/v1/payments/{body['id']}/capture", {"amount_to_capture": amount - 1},
                                 idempotency_key=key())
    assert captured.status == 200, captured.body
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", body["id"])
    records = []
    for _ in range(100):        # the 0220 is sent by the outbox, right after the capture commits
        records = simulator(stack, f"/records?rrn={rrn}")["records"]
        if len(records) == 2:
            break
    by_mti = {record["mti"]: record for record in records}
    assert (by_mti["0100"]["amount_minor"], by_mti["0100"]["currency"]) == (amount, numeric)
    assert by_mti["0220"]["currency"] == numeric
    assert by_mti["0220"]["captured_minor"] == amount - 1      # field 95: the captured part of field 4


async def test_unknown_currency_is_refused(api: Client) -> None:
    response = await api.request("POST", "/v1/payments", {**payment(100), "currency": "xyz"}, idempotency_key=key())
    assert (response.status, response.json()["error"]["code"]) == (400, "currency_invalid")
