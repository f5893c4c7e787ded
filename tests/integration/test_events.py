"""Merchant events on the real stack: every state change a merchant can see is one event, written with the
change, whose `data.object` is the object as the API rendered it then; a replay adds none; the list pages
both ways and filters by type and time; a merchant sees only its own; old events are pruned."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.httpclient import Client
from switch.store import events as event_store
from tests.integration.helpers import VISA_DECLINE, key, luhn_card, payment, shop

pytestmark = pytest.mark.integration


async def _post(client: Client, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
    return await client.request("POST", path, body, idempotency_key=idempotency_key or key("ev"))


async def _events_of(client: Client, object_id: str) -> list[dict[str, Any]]:
    listed = await client.request("GET", "/v1/events?limit=100")
    assert listed.status == 200, listed.body
    return [e for e in listed.json()["data"] if e["data"]["object"]["id"] == object_id]


async def test_each_state_change_is_one_event_with_the_object_as_it_was(stack) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "events-shop") as client:
        held = (await _post(client, "/v1/payments", payment(5000, luhn_card("4571"), "manual"))).json()
        captured = await _post(client, f"/v1/payments/{held['id']}/capture", {"amount_to_capture": 4000})
        assert captured.status == 200
        refund = (await _post(client, "/v1/refunds", {"payment": held["id"], "amount": 1500})).json()
        sale_key, sale_body = key("ev"), payment(2500, luhn_card("4571"), "automatic")
        sale = (await _post(client, "/v1/payments", sale_body, sale_key)).json()
        replay = await _post(client, "/v1/payments", sale_body, sale_key)
        assert replay.headers.get("idempotent-replayed") == "true"
        voided = (await _post(client, "/v1/payments", payment(1200, luhn_card("4571"), "manual"))).json()
        assert (await _post(client, f"/v1/payments/{voided['id']}/cancel", {})).status == 200
        declined = await _post(client, "/v1/payments", payment(900, VISA_DECLINE, "automatic"))
        assert declined.status == 402
        declined_id = declined.json()["error"]["payment_id"]

        held_events = await _events_of(client, held["id"])
        assert [e["type"] for e in reversed(held_events)] == ["payment.authorized", "payment.captured"]
        authorized, captured_event = reversed(held_events)
        assert authorized["data"]["object"]["status"] == "requires_capture"          # as it was then
        assert captured_event["data"]["object"]["amount_received"] == 4000
        assert captured_event["data"]["object"]["amount_refunded"] == 0             # the refund came later
        assert [e["type"] for e in reversed(await _events_of(client, refund["id"]))] == [
            "refund.created", "refund.succeeded"]
        assert [e["type"] for e in await _events_of(client, sale["id"])] == ["payment.succeeded"]   # not replayed
        assert [e["type"] for e in reversed(await _events_of(client, voided["id"]))] == [
            "payment.authorized", "payment.canceled"]
        failed = await _events_of(client, declined_id)
        assert [e["type"] for e in failed] == ["payment.failed"]
        assert failed[0]["data"]["object"]["decline_code"] == "do_not_honor"
        event = failed[0]
        assert event["object"] == "event" and event["api_version"] and event["id"].startswith("evt_")
        one = await client.request("GET", f"/v1/events/{event['id']}")
        assert one.status == 200 and one.json() == event


async def test_the_list_pages_filters_and_keeps_merchants_apart(stack) -> None:  # type: ignore[no-untyped-def]
    client = Client(stack.switch_url, stack.seed_merchant("events-shop-2", fraud_rules="lists"))
    other = Client(stack.switch_url, stack.seed_merchant("events-shop-3", fraud_rules="lists"))
    try:
        for amount in (1100, 1200, 1300, 1400, 1500):
            assert (await _post(client, "/v1/payments", payment(amount, luhn_card("4571"), "automatic"))).status == 200
        everything = (await client.request("GET", "/v1/events?limit=100")).json()["data"]
        assert len(everything) == 5 and [e["data"]["object"]["amount"] for e in everything] == [
            1500, 1400, 1300, 1200, 1100]                                            # newest first
        page = (await client.request("GET", f"/v1/events?limit=2&starting_after={everything[1]['id']}")).json()
        assert [e["id"] for e in page["data"]] == [e["id"] for e in everything[2:4]] and page["has_more"]
        back = (await client.request("GET", f"/v1/events?limit=2&ending_before={everything[3]['id']}")).json()
        assert [e["id"] for e in back["data"]] == [e["id"] for e in everything[1:3]]
        assert len((await client.request("GET", "/v1/events?type=payment.*")).json()["data"]) == 5
        assert (await client.request("GET", "/v1/events?type=refund.succeeded")).json()["data"] == []
        created = everything[0]["created"]
        later = (await client.request("GET", f"/v1/events?created[gte]={created + 3600}")).json()["data"]
        assert later == []
        assert (await other.request("GET", "/v1/events")).json()["data"] == []
        hidden = await other.request("GET", f"/v1/events/{everything[0]['id']}")
        assert hidden.status == 404 and hidden.json()["error"]["code"] == "resource_missing"
        for bad in ("starting_after=pay_1", "type=no%20such", "limit=1000"):
            refused = await client.request("GET", f"/v1/events?{bad}")
            assert refused.status == 400, (bad, refused.body)
    finally:
        await client.close()
        await other.close()


async def test_events_past_the_retention_are_pruned_in_bounded_batches(stack, db) -> None:  # type: ignore[no-untyped-def]
    merchant = "acct_prunetest0000000000"
    await db.executemany("INSERT INTO events (merchant_id, type, object_id, created_at) VALUES "
                         "($1, 'payment.succeeded', $2, now() - make_interval(days => $3))",
                         [(merchant, f"pay_old{i}", 31) for i in range(5)] + [(merchant, "pay_new", 29)])
    old_event = await db.fetchval("SELECT min(id) FROM events WHERE merchant_id = $1", merchant)
    await db.execute("INSERT INTO merchants (id, name) VALUES ($1, 'prune test') ON CONFLICT DO NOTHING", merchant)
    await db.execute("INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret) VALUES "
                     "('we_prunetest000000000000', $1, 'https://example.com/h', '{*}', 'whsec_AAAA')", merchant)
    delivery = await db.fetchval("INSERT INTO webhook_deliveries (event_id, endpoint_id, status) VALUES "
                                 "($1, 'we_prunetest000000000000', 'failed') RETURNING id", old_event)
    await db.execute("INSERT INTO webhook_attempts (event_id, endpoint_id, http_status, latency_ms) VALUES "
                     "($1, 'we_prunetest000000000000', 500, 3)", old_event)
    assert await event_store.prune(db, batch_max=3) == 3
    assert await event_store.prune(db, batch_max=3) == 2
    left = await db.fetch("SELECT object_id FROM events WHERE merchant_id = $1", merchant)
    assert [row["object_id"] for row in left] == ["pay_new"]
    assert not await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE id = $1", delivery)   # with it
    assert not await db.fetchval("SELECT count(*) FROM webhook_attempts WHERE event_id = $1", old_event)
