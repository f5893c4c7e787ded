"""MAC on the visa and mastercard links through the whole stack: session keys from the vault's HSM, the
simulator verifying every request and signing every answer, and a bad answer MAC failing the payment."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import MASTERCARD_OK, VISA_OK, key, payment

pytestmark = pytest.mark.integration


async def test_payments_on_macd_networks_verify_both_ways(api: Client, stack) -> None:
    before = simulator(stack, "/stats")
    for number in (VISA_OK, MASTERCARD_OK):
        created = await api.request("POST", "/v1/payments", payment(1200, number, "automatic"), idempotency_key=key())
        assert created.status == 200, created.body
        assert created.json()["status"] == "succeeded"
    after = simulator(stack, "/stats")
    for network in ("visa", "mastercard"):
        assert after[network]["mac_failures"] == before[network]["mac_failures"] == 0
        assert after[network]["by_mti"]["0200"] == before[network]["by_mti"].get("0200", 0) + 1
        assert after[network]["by_mti"]["0800"] >= 1  # The sign-on that carried the key generation.


async def test_bad_answer_mac_fails_the_payment_and_reverses_it(api: Client, stack, db, ops) -> None:
    simulator(stack, "/behaviour", {"network": "mastercard", "bad_mac_rate": 1.0})
    try:
        created = await api.request("POST", "/v1/payments", payment(1300, MASTERCARD_OK), idempotency_key=key())
    finally:
        simulator(stack, "/behaviour", {"network": "mastercard", "bad_mac_rate": 0.0})
    # An answer that fails its MAC is not trusted: the outcome is unknown, as after a timeout.
    assert created.status == 504, created.body
    error = created.json()["error"]
    assert error["code"] == "network_timeout"
    exposition = (await ops.request("GET", "/metrics")).body.decode()
    rejected = [line for line in exposition.splitlines()
                if line.startswith("switch_network_mac_failures_total{") and 'network="mastercard"' in line]
    assert rejected and float(rejected[0].rsplit(" ", 1)[1]) >= 1
    payment_id = error["payment_id"]
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", payment_id) == "failed"
    acknowledged = None
    async with asyncio.timeout(30):
        while acknowledged is None:
            acknowledged = await db.fetchval(
                "SELECT acknowledged_at FROM network_outbox WHERE payment_id = $1 AND kind = 'reversal'", payment_id)
            await asyncio.sleep(0.1)
