"""The fraud counters' own Redis stopped: payments go on, screened without their counters (fail-open,
with the reason on the payment and a metric), or are blocked when the merchant chose fail-closed; the
screen heals when that Redis is back. The idempotency Redis is untouched throughout."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from loadtest.httpclient import Client
from switch.dev.devstack import free_port
from tests.integration.helpers import key, luhn_card
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration


def pay(number: str) -> dict[str, Any]:
    return {"amount": 1200, "currency": "usd", "capture_method": "manual",
            "payment_method": {"card": {"number": number, "exp_month": 11, "exp_year": 2031, "cvc": "123"}}}


def _redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", directory], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    assert process.stdout is not None
    while time.monotonic() < deadline:
        if b"Ready to accept connections" in process.stdout.readline():
            return process
    raise AssertionError("the fraud Redis did not start")


def _unavailable(ops_url: str) -> float:
    with urllib.request.urlopen(f"{ops_url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback
        lines = answer.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("switch_fraud_unavailable_total"))


async def test_the_screen_fails_open_then_closed_when_its_redis_stops(solo_stack: SoloStack, tmp_path) -> None:
    port = free_port()
    fraud_redis = _redis(port, str(tmp_path))
    switch = solo_stack.start_switch("switch-fraud-redis", {"SWITCH_FRAUD_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    # A merchant of its own: fail-closed must not reach the other drills' merchant.
    client = Client(switch.url, solo_stack.stack.seed_merchant("fraud-fail-closed", fraud_rules="lists"))
    number = luhn_card("4571")
    try:
        normal = await client.request("POST", "/v1/payments", pay(number), idempotency_key=key("fo"))
        assert normal.status == 200 and "velocity_unavailable" not in normal.json()["outcome"]["reasons"]
        before = _unavailable(switch.ops_url)
        fraud_redis.terminate()
        fraud_redis.wait(10)
        opened = await client.request("POST", "/v1/payments", pay(number), idempotency_key=key("fo"))
        assert opened.status == 200, opened.body
        assert "velocity_unavailable" in opened.json()["outcome"]["reasons"]
        assert _unavailable(switch.ops_url) > before

        rules = (await client.request("GET", "/v1/fraud/rules")).json()["rules"]
        closed = await client.request("POST", "/v1/fraud/rules", {"rules": rules, "fail_closed": True})
        assert closed.status == 200 and closed.json()["fail_closed"] is True, closed.body
        refused = await client.request("POST", "/v1/payments", pay(number), idempotency_key=key("fo"))
        assert refused.status == 402 and refused.json()["error"]["decline_code"] == "fraudulent", refused.body
        payment = (await client.request("GET", f"/v1/payments/{refused.json()['error']['payment_id']}")).json()
        assert payment["outcome"]["rule"] == "fail_closed"

        fraud_redis = _redis(port, str(tmp_path))              # back, empty: the scripts load again
        for _ in range(30):
            healed = await client.request("POST", "/v1/payments", pay(number), idempotency_key=key("fo"))
            if healed.status == 200:
                break
            await asyncio.sleep(0.1)
        assert healed.status == 200, healed.body
        assert "velocity_unavailable" not in healed.json()["outcome"]["reasons"]
    finally:
        await client.close()
        solo_stack.stop_switch(switch)
        fraud_redis.terminate()
        fraud_redis.wait(10)
