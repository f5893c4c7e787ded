"""Idempotency: replays byte for byte, mismatches refused, concurrent duplicates charge once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as redis

from loadtest.httpclient import Client
from switch.frontends.http import schema
from switch.idempotency.lock import Idempotency
from tests.conftest import simulator
from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration


async def test_replay_returns_identical_response(api: Client) -> None:
    idem = key()
    first = await api.request("POST", "/v1/payments", payment(4200), idempotency_key=idem)
    second = await api.request("POST", "/v1/payments", payment(4200), idempotency_key=idem)
    assert first.status == second.status == 200
    assert second.body == first.body
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers


async def test_replay_of_a_decline_is_identical(api: Client) -> None:
    idem = key()
    first = await api.request("POST", "/v1/payments", payment(999, "4000000000000002"), idempotency_key=idem)
    second = await api.request("POST", "/v1/payments", payment(999, "4000000000000002"), idempotency_key=idem)
    assert first.status == second.status == 402
    assert second.body == first.body


async def test_same_key_different_body_is_an_idempotency_error(api: Client) -> None:
    idem = key()
    await api.request("POST", "/v1/payments", payment(100), idempotency_key=idem)
    response = await api.request("POST", "/v1/payments", payment(101), idempotency_key=idem)
    assert response.status == 400
    assert response.json()["error"]["type"] == "idempotency_error"


async def test_concurrent_duplicates_charge_once(api: Client, stack, db) -> None:
    idem = key("dup")
    clients = [Client(stack.switch_url, stack.api_key) for _ in range(20)]
    try:
        responses = await asyncio.gather(*(c.request("POST", "/v1/payments", payment(1313), idempotency_key=idem)
                                           for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {200, 409}
    successes = [r for r in responses if r.status == 200]
    assert successes and all(r.body == successes[0].body for r in successes)
    for conflict in (r for r in responses if r.status == 409):
        assert conflict.json()["error"]["code"] == "idempotency_key_in_use"
    payment_id = successes[0].json()["id"]
    assert await db.fetchval("SELECT count(*) FROM payments WHERE id = $1", payment_id) == 1
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", payment_id)
    records = simulator(stack, f"/records?rrn={rrn}")["records"]
    assert len([r for r in records if r["mti"] == "0100"]) == 1


async def test_a_stale_lock_left_by_a_crash_is_answered_from_postgres(api: Client, stack, db) -> None:
    """A worker killed after recording its answer but before caching it leaves a lock in Redis; once the
    lock is older than the budget, the replay comes from Postgres instead of a 409 until the lock expires."""
    idem = key("stale")
    first = await api.request("POST", "/v1/payments", payment(777), idempotency_key=idem)
    merchant_id = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", first.json()["id"])
    client = redis.Redis.from_url(stack.redis_url)
    try:
        helper = Idempotency(client, db, bytes.fromhex(stack.switch_env()["SWITCH_REQUEST_HMAC_KEY"]), 30, 60,
                             lock_stale_after_s=1.0)
        fingerprint = helper.fingerprint("POST", "/v1/payments", _canonical(payment(777)))
        name = helper.redis_key(merchant_id, idem)
        fresh_ms = int(time.time() * 1000)
        await client.set(name, b"L" + fingerprint + fresh_ms.to_bytes(8, "big"), ex=30)
        fresh = await api.request("POST", "/v1/payments", payment(777), idempotency_key=idem)
        assert fresh.status == 409                      # a young lock: the request may still be in flight
        await client.set(name, b"L" + fingerprint + (fresh_ms - 60_000).to_bytes(8, "big"), ex=30)
        stale = await api.request("POST", "/v1/payments", payment(777), idempotency_key=idem)
    finally:
        await client.aclose()
    assert stale.status == 200
    assert stale.body == first.body
    assert stale.headers.get("idempotent-replayed") == "true"


async def test_a_replay_cache_entry_it_cannot_read_is_answered_from_postgres(api: Client, stack, db) -> None:
    """A replay cached by an older release (another format) is not trusted: Postgres holds the outcome."""
    idem = key("old-cache")
    first = await api.request("POST", "/v1/payments", payment(778), idempotency_key=idem)
    merchant_id = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", first.json()["id"])
    client = redis.Redis.from_url(stack.redis_url)
    try:
        helper = Idempotency(client, db, bytes.fromhex(stack.switch_env()["SWITCH_REQUEST_HMAC_KEY"]), 30, 60)
        fingerprint = helper.fingerprint("POST", "/v1/payments", _canonical(payment(778)))
        await client.set(helper.redis_key(merchant_id, idem), b"D" + fingerprint + b"200{\"id\":\"pay_old\"}", ex=30)
        again = await api.request("POST", "/v1/payments", payment(778), idempotency_key=idem)
    finally:
        await client.aclose()
    assert again.status == 200
    assert again.body == first.body
    assert again.headers.get("idempotent-replayed") == "true"


def _canonical(body: dict[str, Any]) -> bytes:
    """What the switch fingerprints for this body: its decoded command."""
    return schema.canonical(schema.decode(schema.authorize_decoder, json.dumps(body).encode()))
