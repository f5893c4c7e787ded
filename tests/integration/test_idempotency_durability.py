"""Stored responses outlive the switch process and Redis's copy: a replay after the switch is killed and
started again, and after Redis is flushed (Postgres answers), is byte for byte the first answer; a
different body under the same key is still refused. On the dedicated stack."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from tests.integration.helpers import MASTERCARD_OK, VISA_DECLINE, key, payment
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration


async def test_replays_survive_a_restart_and_a_flushed_redis(solo_stack: SoloStack) -> None:
    first_switch = solo_stack.start_switch("switch-durability-1")
    client = solo_stack.client(first_switch)
    requests = {key("paid"): payment(2100, MASTERCARD_OK, "automatic"), key("declined"): payment(2200, VISA_DECLINE)}
    try:
        originals = {k: await client.request("POST", "/v1/payments", body, idempotency_key=k)
                     for k, body in requests.items()}
    finally:
        await client.close()
    assert sorted(r.status for r in originals.values()) == [200, 402]

    solo_stack.stop_switch(first_switch, kill=True)
    second_switch = solo_stack.start_switch("switch-durability-2")
    client = solo_stack.client(second_switch)
    cache = redis.Redis.from_url(solo_stack.stack.redis_url)
    try:
        for flush in (False, True, True):
            if flush:
                await cache.flushall()      # the replay must come from Postgres
            for idempotency_key, body in requests.items():
                replay = await client.request("POST", "/v1/payments", body, idempotency_key=idempotency_key)
                original = originals[idempotency_key]
                assert (replay.status, replay.body) == (original.status, original.body)
                assert replay.headers.get("idempotent-replayed") == "true"
        await cache.flushall()
        for idempotency_key, body in requests.items():
            other = await client.request("POST", "/v1/payments", {**body, "amount": body["amount"] + 1},
                                         idempotency_key=idempotency_key)
            assert other.status == 400, other.body
            error = other.json()["error"]
            assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_reused")
    finally:
        await cache.aclose()
        await client.close()
        solo_stack.stop_switch(second_switch)
