"""Webhooks on the real stack, to a real receiver on loopback: an endpoint gets each event it subscribed to,
signed as the Standard Webhooks reference library verifies; a failing endpoint is retried on the schedule
(the test stack's is short) with the same webhook-id until it answers 2xx, and every attempt is logged;
410 disables it; a hung endpoint does not hold up another's deliveries; bad and SSRF-prone URLs are refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from loadtest.httpclient import Client
from switch.common import http
from switch.dev.devstack import free_port
from tests.integration.helpers import key, luhn_card, payment, shop

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """Answers by path: /ok 200, /flaky 500 to the first two attempts of each message, /fail 500, /gone 410,
    /hang never (until the switch gives up on it)."""

    port: int = 0
    received: list[tuple[str, dict[str, str], bytes, float]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: http.Request) -> http.Response:
        self.received.append((request.path, dict(request.headers), request.body, time.monotonic()))
        message = request.header("webhook-id")
        self.attempts[f"{request.path} {message}"] += 1
        if request.path.startswith("/hang"):
            await asyncio.sleep(30)
        if request.path.startswith("/fail"):
            return http.Response(500, b'{"error":"always"}')
        if request.path.startswith("/gone"):
            return http.Response(410, b'{"gone":true}')
        if request.path.startswith("/flaky") and self.attempts[f"{request.path} {message}"] <= 2:
            return http.Response(500, b'{"error":"try again"}')
        return http.Response(200, b'{"ok":true}')

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for got, headers, body, _ in self.received if got == path]


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> Receiver:
    found = Receiver(port=free_port())
    server = await http.serve(found.handle, "127.0.0.1", found.port)
    yield found
    server.close()


async def _endpoint(client: Client, url: str, events: list[str]) -> dict[str, Any]:
    made = await client.request("POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": events})
    assert made.status == 200, made.body
    return made.json()


async def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_subscribed_events_arrive_signed_once_each(stack, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "hooks-shop") as client:
        every = await _endpoint(client, receiver.url("/ok/every"), ["*"])
        assert every["secret"].startswith("whsec_") and every["status"] == "enabled"
        assert "secret" not in (await client.request("GET", f"/v1/webhook_endpoints/{every['id']}")).json()
        captures = await _endpoint(client, receiver.url("/ok/captures"), ["payment.captured"])
        held = await client.request("POST", "/v1/payments", payment(3000, luhn_card("4571"), "manual"),
                                    idempotency_key=key("wh"))
        captured = await client.request("POST", f"/v1/payments/{held.json()['id']}/capture", {},
                                        idempotency_key=key("wh"))
        assert captured.status == 200
        await _until(lambda: len(receiver.bodies("/ok/every")) >= 2 and receiver.bodies("/ok/captures"))
        await asyncio.sleep(0.5)                                   # nothing more comes
        got = [Webhook(every["secret"]).verify(body, headers) for headers, body in receiver.bodies("/ok/every")]
        # An endpoint's deliveries run concurrently: they may arrive in either order (as Stripe's do).
        assert sorted(event["type"] for event in got) == ["payment.authorized", "payment.captured"]
        assert [e["data"]["object"]["id"] for e in got] == [held.json()["id"]] * 2
        assert [headers["webhook-id"] for headers, _ in receiver.bodies("/ok/every")] == [e["id"] for e in got]
        only = [Webhook(captures["secret"]).verify(b, h)["type"] for h, b in receiver.bodies("/ok/captures")]
        assert only == ["payment.captured"]
        with pytest.raises(Exception, match="signature"):        # another endpoint's secret does not verify
            headers, body = receiver.bodies("/ok/captures")[0]
            Webhook(every["secret"]).verify(body, headers)


async def test_a_failing_endpoint_is_retried_with_the_same_id_and_410_disables(stack, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "hooks-shop-2") as client:
        await _endpoint(client, receiver.url("/flaky"), ["payment.succeeded"])
        gone = await _endpoint(client, receiver.url("/gone"), ["payment.succeeded"])
        sale = await client.request("POST", "/v1/payments", payment(1500, luhn_card("4571"), "automatic"),
                                    idempotency_key=key("wh"))
        assert sale.status == 200
        await _until(lambda: len(receiver.bodies("/flaky")) >= 3)
        ids = {headers["webhook-id"] for headers, _ in receiver.bodies("/flaky")}
        assert len(ids) == 1 and len(receiver.bodies("/flaky")) == 3      # 500, 500, then 200: delivered
        event_id = ids.pop()

        async def logged() -> list[dict[str, Any]]:
            return (await client.request("GET", f"/v1/events/{event_id}/deliveries")).json()["data"]

        for _ in range(100):
            deliveries = {d["endpoint"]: d for d in await logged()}
            if len(deliveries) == 2 and all(d["status"] != "pending" for d in deliveries.values()):
                break
            await asyncio.sleep(0.05)
        flaky = next(d for e, d in deliveries.items() if e != gone["id"])
        assert flaky["status"] == "delivered" and [a["http_status"] for a in flaky["attempts"]] == [500, 500, 200]
        assert deliveries[gone["id"]]["status"] == "failed"
        shown = (await client.request("GET", f"/v1/webhook_endpoints/{gone['id']}")).json()
        assert shown["status"] == "disabled" and "410" in shown["disabled_reason"]
        assert len(receiver.bodies("/gone")) == 1


async def test_a_hung_endpoint_does_not_hold_up_another(stack, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "hooks-shop-3") as client:
        await _endpoint(client, receiver.url("/hang"), ["payment.succeeded"])
        await _endpoint(client, receiver.url("/ok/beside"), ["payment.succeeded"])
        started = time.monotonic()
        for amount in range(1100, 1110):
            made = await client.request("POST", "/v1/payments", payment(amount, luhn_card("4571"), "automatic"),
                                        idempotency_key=key("wh"))
            assert made.status == 200
        await _until(lambda: len(receiver.bodies("/ok/beside")) >= 10, timeout_s=8.0)
        assert time.monotonic() - started < 8.0                      # the hung one takes 10 s per attempt
        amounts = sorted(json.loads(body)["data"]["object"]["amount"] for _, body in receiver.bodies("/ok/beside"))
        assert amounts == list(range(1100, 1110))


@pytest.mark.parametrize(("url", "code"), [
    ("ftp://example.com/hook", "url_invalid"),
    ("http://169.254.169.254/latest/meta-data", "url_invalid"),
    ("http://10.0.0.7/hook", "url_invalid"),
    ("http://[fd00::1]/hook", "url_invalid"),
    ("http://user:pw@example.com/hook", "url_invalid"),
])
async def test_urls_a_webhook_may_not_go_to_are_refused(stack, url: str, code: str) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "hooks-shop-4") as client:
        refused = await client.request("POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]})
        assert refused.status == 400 and refused.json()["error"]["code"] == code, refused.body
        unknown = await client.request("POST", "/v1/webhook_endpoints",
                                       {"url": "https://example.com/h", "enabled_events": ["payment.exploded"]})
        assert unknown.status == 400 and unknown.json()["error"]["param"] == "enabled_events"


async def test_a_rolled_secret_signs_beside_the_old_one_and_replay_delivers_again(stack, db,  # type: ignore[no-untyped-def]
                                                                                 receiver: Receiver) -> None:
    async with shop(stack, "hooks-shop-5") as client:
        made = await _endpoint(client, receiver.url("/ok/rolled"), ["payment.succeeded"])
        rolled = await client.request("POST", f"/v1/webhook_endpoints/{made['id']}/roll_secret", {"expires_in_s": 600})
        assert rolled.status == 200 and rolled.json()["secret"] != made["secret"]
        sale = await client.request("POST", "/v1/payments", payment(1600, luhn_card("4571"), "automatic"),
                                    idempotency_key=key("wh"))
        assert sale.status == 200
        await _until(lambda: receiver.bodies("/ok/rolled"))
        headers, body = receiver.bodies("/ok/rolled")[0]
        assert len(headers["webhook-signature"].split(" ")) == 2      # both secrets sign during the overlap
        for secret in (made["secret"], rolled.json()["secret"]):
            assert Webhook(secret).verify(body, headers)["type"] == "payment.succeeded"

        replayed = await asyncio.to_thread(_cli, stack, "webhooks", "replay", "--event", headers["webhook-id"])
        assert replayed.returncode == 0 and "1 deliveries queued again" in replayed.stdout, replayed.stderr
        await _until(lambda: len(receiver.bodies("/ok/rolled")) == 2)
        assert receiver.bodies("/ok/rolled")[1][0]["webhook-id"] == headers["webhook-id"]   # the same message
        pending = await asyncio.to_thread(_cli, stack, "webhooks", "pending")
        assert pending.returncode == 0 and "pending deliveries" in pending.stdout


async def test_an_endpoint_failing_for_three_days_is_disabled_with_an_event(stack, db,  # type: ignore[no-untyped-def]
                                                                            receiver: Receiver) -> None:
    async with shop(stack, "hooks-shop-6") as client:
        failing = await _endpoint(client, receiver.url("/fail/always"), ["payment.succeeded"])
        watching = await _endpoint(client, receiver.url("/ok/watching"), ["webhook_endpoint.disabled"])
        await db.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' "
                         "WHERE id = $1", failing["id"])
        sale = await client.request("POST", "/v1/payments", payment(1700, luhn_card("4571"), "automatic"),
                                    idempotency_key=key("wh"))
        assert sale.status == 200
        await _until(lambda: receiver.bodies("/ok/watching"))
        event = Webhook(watching["secret"]).verify(*reversed(receiver.bodies("/ok/watching")[0]))
        assert event["type"] == "webhook_endpoint.disabled" and event["data"]["object"]["id"] == failing["id"]
        assert "secret" not in event["data"]["object"]
        shown = (await client.request("GET", f"/v1/webhook_endpoints/{failing['id']}")).json()
        assert shown["status"] == "disabled" and "failed for 3 days" in shown["disabled_reason"]


async def _insert_event(conn, merchant: str, name: str) -> int:  # type: ignore[no-untyped-def]
    """An event whose object is written in its data (a webhook_endpoint's JSON), so no payment need exist."""
    return int(await conn.fetchval(
        "INSERT INTO events (merchant_id, type, object_id, data) VALUES ($1, 'webhook_endpoint.disabled', $2, $3) "
        "RETURNING id", merchant, name, json.dumps({"id": name, "object": "webhook_endpoint"}).encode()))


async def test_an_event_that_commits_after_a_later_one_is_delivered_and_the_later_one_waits(  # type: ignore[no-untyped-def]
        stack, db, receiver: Receiver) -> None:
    """Event ids are taken before commit: an event whose transaction commits after a later event's must still
    be delivered (a cursor by id alone would pass over it), and the later one waits until it is."""
    async with shop(stack, "hooks-late") as client:
        made = await _endpoint(client, receiver.url("/ok/late"), ["*"])
        merchant = await db.fetchval("SELECT merchant_id FROM webhook_endpoints WHERE id = $1", made["id"])
        async with db.acquire() as slow:
            open_transaction = slow.transaction()
            await open_transaction.start()
            early = await _insert_event(slow, merchant, "we_early")
            later = await _insert_event(db, merchant, "we_later")          # committed first
            assert later > early
            await asyncio.sleep(2.5)                                       # the deliverer looks meanwhile
            assert receiver.bodies("/ok/late") == []
            await open_transaction.commit()
        await _until(lambda: len(receiver.bodies("/ok/late")) >= 2)
        await asyncio.sleep(0.5)
        ids = sorted(headers["webhook-id"] for headers, _ in receiver.bodies("/ok/late"))
        assert ids == [f"evt_{early:016d}", f"evt_{later:016d}"]


async def test_an_event_that_cannot_be_rendered_fails_alone(stack, db, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """One bad event (its payment gone) is logged as failed and the cursor goes on past it."""
    async with shop(stack, "hooks-bad-event") as client:
        made = await _endpoint(client, receiver.url("/ok/after-bad"), ["*"])
        merchant = await db.fetchval("SELECT merchant_id FROM webhook_endpoints WHERE id = $1", made["id"])
        bad = await db.fetchval("INSERT INTO events (merchant_id, type, object_id) VALUES ($1, 'payment.settled', "
                                "'pay_nosuchpayment') RETURNING id", merchant)
        good = await _insert_event(db, merchant, "we_after_bad")
        await _until(lambda: receiver.bodies("/ok/after-bad"))
        assert [h["webhook-id"] for h, _ in receiver.bodies("/ok/after-bad")] == [f"evt_{good:016d}"]
        deadline = time.monotonic() + 10
        while True:                                   # attempts are recorded a moment after they end
            shown = await client.request("GET", f"/v1/events/evt_{bad:016d}/deliveries")
            assert shown.status == 200, shown.body
            (delivery,) = shown.json()["data"]
            if delivery["status"] != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert delivery["status"] == "failed"
        assert delivery["attempts"][0]["error"] == "the event cannot be rendered"


def _cli(stack, *args: str):  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "switch", *args], capture_output=True, text=True,
                          env={**os.environ, **stack.switch_env()}, check=False)


async def test_endpoints_from_the_cli(stack, db) -> None:  # type: ignore[no-untyped-def]
    api_key = stack.seed_merchant("hooks-shop-7", fraud_rules="lists")
    client = Client(stack.switch_url, api_key)
    try:
        sale = await client.request("POST", "/v1/payments", payment(1800, luhn_card("4571"), "automatic"),
                                    idempotency_key=key("wh"))
        merchant = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", sale.json()["id"])
    finally:
        await client.close()
    made = await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "create", "--merchant", merchant, "--url",
                                   "https://hooks.example.com/in", "--events", "payment.succeeded,refund.failed")
    assert made.returncode == 0 and "secret (shown once): whsec_" in made.stdout, made.stderr
    endpoint = made.stdout.split()[0]
    refused = await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "create", "--merchant", merchant,
                                      "--url", "http://169.254.169.254/", "--events", "*")
    assert refused.returncode == 2 and "refused range" in refused.stderr
    disabled = await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "disable", "--merchant", merchant,
                                       "--endpoint", endpoint)
    assert disabled.returncode == 0
    listed = await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "list", "--merchant", merchant)
    assert f"{endpoint}  disabled (by the merchant)  payment.succeeded,refund.failed" in listed.stdout
    gone = await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "delete", "--merchant", merchant,
                                   "--endpoint", endpoint)
    assert gone.returncode == 0
    assert endpoint not in (await asyncio.to_thread(_cli, stack, "webhooks", "endpoints", "list", "--merchant",
                                                    merchant)).stdout
