"""Fraud screening on the real stack: Radar's test cards, the review queue, lists, rules through the API,
velocity, a card-testing burst beside a legitimate customer, no raw value in Redis keys, and a backtest.

Each test pays with cards of its own (the card's counters are switch-wide, and the rest of the suite pays
with a few test cards again and again) at a merchant with the default rules.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as redis

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import clear_of_a_minute_edge, key, luhn_card

pytestmark = pytest.mark.integration


def pay(number: str, amount: int = 2500, capture_method: str = "manual", **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "capture_method": capture_method,
            "payment_method": {"card": {"number": number, "exp_month": 11, "exp_year": 2031, "cvc": "123"}}, **extra}


@pytest_asyncio.fixture(loop_scope="session")
async def shop(stack) -> Client:  # type: ignore[no-untyped-def]
    client = Client(stack.switch_url, stack.seed_merchant("fraud-shop", fraud_rules="default"))
    yield client
    await client.close()


async def _merchant_of(db, payment_id: str) -> str:  # type: ignore[no-untyped-def]
    return await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", payment_id)


async def _network_records(stack, db, payment_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", payment_id)
    return list(simulator(stack, f"/records?rrn={rrn}")["records"])


async def test_radar_test_cards_block_or_send_to_review(shop: Client, stack, db) -> None:
    for number, score in (("4100000000000019", 99), ("4000000000004954", 85)):
        blocked = await shop.request("POST", "/v1/payments", pay(number), idempotency_key=key("radar"))
        assert blocked.status == 402, blocked.body
        error = blocked.json()["error"]
        assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "fraudulent")
        payment = (await shop.request("GET", f"/v1/payments/{error['payment_id']}")).json()
        assert payment["status"] == "failed"
        assert payment["outcome"] == {"type": "blocked", "risk_level": "highest", "risk_score": score,
                                      "rule": "block if :risk_level: = 'highest'", "reasons": ["test_card"]}
        assert await _network_records(stack, db, payment["id"]) == []        # never sent to a network
    elevated = await shop.request("POST", "/v1/payments", pay("4000000000009235", capture_method="automatic"),
                                  idempotency_key=key("radar"))
    assert elevated.status == 200, elevated.body
    held = elevated.json()
    assert (held["status"], held["capture_method"]) == ("requires_capture", "manual")    # held, not captured
    assert held["outcome"]["type"] == "manual_review" and held["outcome"]["risk_level"] == "elevated"
    assert held["review"] == "prv_" + held["id"].removeprefix("pay_")


async def test_a_review_is_approved_into_its_capture_or_rejected_into_a_reversal(shop: Client, stack, db) -> None:
    approve_me = (await shop.request("POST", "/v1/payments", pay("4000000000009235", 4100, "automatic"),
                                     idempotency_key=key("rv"))).json()
    reject_me = (await shop.request("POST", "/v1/payments", pay("4000000000009235", 4200, "manual"),
                                    idempotency_key=key("rv"))).json()
    queue = (await shop.request("GET", "/v1/reviews?limit=100")).json()
    assert {approve_me["review"], reject_me["review"]} <= {review["id"] for review in queue["data"]}
    refused = await shop.request("POST", f"/v1/payments/{approve_me['id']}/capture", {}, idempotency_key=key("rv"))
    assert refused.status == 400 and refused.json()["error"]["code"] == "payment_in_review"

    approved = await shop.request("POST", f"/v1/reviews/{approve_me['review']}/approve", {},
                                  idempotency_key=key("rv"))
    assert approved.status == 200, approved.body
    assert approved.json()["status"] == "succeeded"          # it was asked for automatic capture
    rejected = await shop.request("POST", f"/v1/reviews/{reject_me['review']}/reject", {}, idempotency_key=key("rv"))
    assert rejected.status == 200 and rejected.json()["status"] == "canceled", rejected.body
    again = await shop.request("POST", f"/v1/reviews/{reject_me['review']}/approve", {}, idempotency_key=key("rv"))
    assert again.status == 404                               # closed: no open review left
    queue = (await shop.request("GET", "/v1/reviews?limit=100")).json()
    assert not {approve_me["review"], reject_me["review"]} & {review["id"] for review in queue["data"]}
    audit = await db.fetch("SELECT action FROM fraud_audit WHERE detail->>'payment' = ANY($1::text[]) ORDER BY id",
                           [approve_me["id"], reject_me["id"]])
    assert [row["action"] for row in audit] == ["review.approved", "review.rejected"]
    for _ in range(50):                                      # the void's reversal leaves from the outbox
        if any(record["mti"] == "0400" for record in await _network_records(stack, db, reject_me["id"])):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the rejected review's authorization was not reversed")


async def test_a_card_on_the_blocklist_is_blocked_and_lets_go_when_removed(shop: Client) -> None:
    number = luhn_card("4571")
    first = (await shop.request("POST", "/v1/payments", pay(number), idempotency_key=key("bl"))).json()
    fingerprint = first["payment_method"]["card"]["fingerprint"]
    added = await shop.request("POST", "/v1/fraud/lists/blocklist", {"value": fingerprint})
    assert added.status == 200 and fingerprint in [item["value"] for item in added.json()["data"]], added.body
    blocked = await shop.request("POST", "/v1/payments", pay(number), idempotency_key=key("bl"))
    assert blocked.status == 402 and blocked.json()["error"]["decline_code"] == "fraudulent"
    by_email = await shop.request("POST", "/v1/fraud/lists/blocklist", {"value": "Mallory@Example.com"})
    assert by_email.status == 200
    other = await shop.request("POST", "/v1/payments", pay(luhn_card("4571"), customer_details={
        "email": "mallory@example.COM", "ip_address": "198.51.100.23"}), idempotency_key=key("bl"))
    assert other.status == 402, other.body
    await shop.request("POST", "/v1/fraud/lists/blocklist/remove", {"value": fingerprint})
    again = await shop.request("POST", "/v1/payments", pay(number), idempotency_key=key("bl"))
    assert again.status == 200, again.body
    bad = await shop.request("POST", "/v1/payments", pay(number, customer_details={"ip_address": "300.1.1.1"}),
                             idempotency_key=key("bl"))
    assert bad.status == 400 and "ip_address" in bad.json()["error"]["message"]


async def test_rules_are_versioned_a_bad_one_is_a_400_and_shadow_rules_only_count(stack, ops) -> None:
    client = Client(stack.switch_url, stack.seed_merchant("fraud-rules", fraud_rules="default"))
    try:
        bad = await client.request("POST", "/v1/fraud/rules", {"rules": [
            {"rule": "block if :amount: > 1"}, {"rule": "review if :amont: > 5"}]})
        assert bad.status == 400, bad.body
        error = bad.json()["error"]
        assert error["code"] == "rule_invalid" and error["param"] == "rules[1][rule]"
        assert "unknown attribute :amont: (at position 10)" in error["message"]
        assert (await client.request("GET", "/v1/fraud/rules")).json()["version"] == 0       # unchanged
        created = await client.request("POST", "/v1/fraud/rules", {"rules": [
            {"rule": "block if :amount: = 4242"}, {"rule": "review if :amount: > 100", "shadow": True}]})
        assert created.status == 200 and created.json()["version"] == 1, created.body
        blocked = await client.request("POST", "/v1/payments", pay(luhn_card("4571"), 4242), idempotency_key=key())
        assert blocked.status == 402
        allowed = await client.request("POST", "/v1/payments", pay(luhn_card("4571"), 500), idempotency_key=key())
        assert allowed.status == 200, allowed.body
        assert "shadow: review if :amount: > 100" in allowed.json()["outcome"]["reasons"]
        assert allowed.json()["outcome"]["type"] == "authorized"
        metrics = (await ops.request("GET", "/metrics")).body.decode()
        assert "switch_fraud_shadow_matches_total" in metrics
    finally:
        await client.close()


async def test_a_card_used_too_often_is_blocked(shop: Client) -> None:
    number = luhn_card("4571")
    await clear_of_a_minute_edge()
    statuses = [(await shop.request("POST", "/v1/payments", pay(number, 900 + i), idempotency_key=key("v"))).status
                for i in range(12)]
    assert statuses == [200] * 5 + [402] * 7                  # block if :card_velocity_1m: > 5


async def test_card_testing_from_one_address_is_blocked_while_a_customer_beside_it_pays(stack, ops) -> None:
    client = Client(stack.switch_url, stack.seed_merchant("fraud-testing", fraud_rules="default"))
    attacker = {"ip_address": "203.0.113.77"}
    try:
        async def attack(i: int) -> int:
            body = pay(luhn_card("4571"), 100 + i, customer_details=attacker)
            return (await client.request("POST", "/v1/payments", body, idempotency_key=key("ct"))).status

        async def customer(i: int) -> int:              # two customers, three payments each
            body = pay(customer_cards[i % 2], 5400 + i, customer_details={"ip_address": f"198.51.100.{8 + i % 2}",
                                                                           "email": f"jo{i % 2}@example.org"})
            return (await client.request("POST", "/v1/payments", body, idempotency_key=key("ok"))).status

        customer_cards = [luhn_card("5555"), luhn_card("5555")]
        await clear_of_a_minute_edge()
        attack_statuses: list[int] = []
        customer_statuses: list[int] = []
        for wave in range(6):
            answers = await asyncio.gather(*(attack(wave * 5 + i) for i in range(5)), customer(wave))
            attack_statuses += answers[:5]
            customer_statuses.append(answers[5])
        assert customer_statuses == [200] * 6
        assert attack_statuses.count(402) >= 25, attack_statuses          # all but the first few cards
        metrics = (await ops.request("GET", "/metrics")).body.decode()
        started = [line for line in metrics.splitlines() if line.startswith("switch_fraud_card_testing_started_total")]
        assert started and float(started[0].split()[-1]) >= 1
    finally:
        await client.close()


async def test_no_card_fingerprint_address_or_email_is_a_redis_key(stack, shop: Client) -> None:
    number, email, address = luhn_card("4571"), "private.person@example.net", "192.0.2.199"
    made = (await shop.request("POST", "/v1/payments", pay(number, customer_details={
        "email": email, "ip_address": address}), idempotency_key=key("k"))).json()
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = [name.decode() async for name in client.scan_iter(count=1000)]
    finally:
        await client.aclose()
    assert any(name.startswith("fv:") for name in keys) and any(name.startswith("fs:") for name in keys)
    secrets = [number, email, "private.person", address, made["payment_method"]["card"]["fingerprint"]]
    assert not [name for name in keys for secret in secrets if secret in name]
    # The BIN, six digits, matches a key's hash (32 hex digits) by chance once in about 10^6 keys: it is
    # looked for in what is left of each name without its hashes.
    assert not [name for name in keys if number[:6] in re.sub(r"[0-9a-f]{24,}", "", name)]


async def _backtest(stack, merchant: str, rule: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    argv = [sys.executable, "-m", "switch", "fraud", "backtest", "--merchant", merchant, "--rule", rule]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                   env={**os.environ, **stack.switch_env()})


async def test_a_backtest_counts_what_a_rule_would_have_stopped(stack, db) -> None:
    client = Client(stack.switch_url, stack.seed_merchant("fraud-backtest", fraud_rules="lists"))
    try:
        ids = []
        for amount in (1500, 1600, 1700, 300, 400):
            made = await client.request("POST", "/v1/payments", pay(luhn_card("4571"), amount, "automatic"),
                                        idempotency_key=key("bt"))
            ids.append(made.json()["id"])
        refund = await client.request("POST", "/v1/refunds", {"payment": ids[0]}, idempotency_key=key("bt"))
        assert refund.status == 200, refund.body
        merchant = await _merchant_of(db, ids[0])
    finally:
        await client.close()
    result = await _backtest(stack, merchant, "block if :amount: > 1000")
    assert result.returncode == 0, result.stderr
    assert "payments screened: 5" in result.stdout
    assert "would block: 3 (60.0 %)" in result.stdout
    assert "of which failed: 0, refunded: 1, canceled: 0" in result.stdout
    bad = await _backtest(stack, merchant, "block if :amount > 1")
    assert bad.returncode == 2 and "position" in bad.stderr


async def test_a_full_list_refuses_more_values(stack, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from switch.fraud import admin

    client = Client(stack.switch_url, stack.seed_merchant("fraud-full-list", fraud_rules="lists"))
    try:
        made = await client.request("POST", "/v1/payments", pay(luhn_card("4571")), idempotency_key=key("fl"))
        merchant = await _merchant_of(db, made.json()["id"])
    finally:
        await client.close()
    from switch.store.pool import connect

    monkeypatch.setattr(admin, "LIST_ITEMS_MAX", 2)
    conn = await connect(stack.database_url)           # with the switch's JSON codecs
    try:
        for value in ("a@x.io", "b@x.io"):
            assert await admin.add_to_list(conn, merchant, "blocklist", value, "test")
        with pytest.raises(ValueError, match="at most 2 values"):
            await admin.add_to_list(conn, merchant, "blocklist", "c@x.io", "test")
    finally:
        await conn.close()
