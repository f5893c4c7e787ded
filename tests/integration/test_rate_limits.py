"""Rate limits per API key and per address, shared by the switch's workers through Redis: 429 with an
honest Retry-After once the budget is spent, served again after the refill, a merchant's own limit."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from loadtest.httpclient import Client, HttpResponse
from tests.integration.helpers import key, payment
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration

KEY_PER_S, KEY_BURST = 5, 10


@pytest.fixture(scope="module")
def limited(solo_stack: SoloStack):  # type: ignore[no-untyped-def]
    """Two workers sharing the default-sized buckets scaled down, and a merchant with default limits."""
    stack = solo_stack.stack
    stack.merchant_rate_limit_per_s = None                     # this merchant keeps the switch's default
    api_key = stack.seed_merchant("rate-limited")
    stack.merchant_rate_limit_per_s = 1_000_000
    argv_env = {"SWITCH_RATE_LIMIT_KEY_PER_S": str(KEY_PER_S), "SWITCH_RATE_LIMIT_KEY_BURST": str(KEY_BURST)}
    switch = solo_stack.start_switches({"switch-limits": argv_env}, workers=2)["switch-limits"]
    yield switch, api_key
    solo_stack.stop_switch(switch)


async def _burst(url: str, api_key: str, count: int, connections: int = 4) -> list[HttpResponse]:
    clients = [Client(url, api_key) for _ in range(connections)]
    try:
        return list(await asyncio.gather(*(clients[i % connections].request("GET", "/v1/payments?limit=1")
                                           for i in range(count))))
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_a_key_over_its_budget_gets_429_with_an_honest_retry_after(limited) -> None:
    switch, api_key = limited
    started = time.monotonic()
    answers = await _burst(switch.url, api_key, 3 * KEY_BURST)
    refilled = KEY_PER_S * (time.monotonic() - started)        # a slow machine's burst takes longer
    statuses = [r.status for r in answers]
    assert statuses.count(200) <= KEY_BURST + refilled + 1, statuses
    assert statuses.count(429) == len(statuses) - statuses.count(200) >= 1, statuses
    refused = next(r for r in answers if r.status == 429)
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    retry_after_s = int(refused.headers["retry-after"])
    assert 1 <= retry_after_s <= 2                             # 1 token at 5/s: 200 ms, in whole seconds
    await asyncio.sleep(retry_after_s)
    again = await _burst(switch.url, api_key, 1)
    assert again[0].status == 200                              # refilled, as Retry-After said


async def test_a_payment_over_the_budget_is_refused_before_anything_is_written(limited, solo_stack) -> None:
    switch, api_key = limited
    await asyncio.sleep(KEY_BURST / KEY_PER_S)                 # a full bucket
    client = Client(switch.url, api_key)
    keys = [key("limited") for _ in range(2 * KEY_BURST)]
    try:
        answers = await asyncio.gather(*(client.request("POST", "/v1/payments", payment(210), idempotency_key=k)
                                         for k in keys))
        limited_keys = [k for k, r in zip(keys, answers, strict=True) if r.status == 429]
        assert limited_keys
        pool = await solo_stack.pool()
        try:
            written = await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE idempotency_key = ANY($1)",
                                          limited_keys)
        finally:
            await pool.close()
        assert written == 0
        await asyncio.sleep(2 * KEY_BURST / KEY_PER_S)
        retried = await client.request("POST", "/v1/payments", payment(210), idempotency_key=limited_keys[0])
        assert retried.status == 200                           # the key was not kept: it goes through now
    finally:
        await client.close()


async def test_the_budget_is_shared_by_the_workers_and_a_merchant_override_lifts_it(limited, solo_stack) -> None:
    switch, api_key = limited
    assert len(switch.worker_pids()) == 2                      # one port, SO_REUSEPORT: either worker answers
    await asyncio.sleep(KEY_BURST / KEY_PER_S)
    started = time.monotonic()
    answers = await _burst(switch.url, api_key, 4 * KEY_BURST, connections=8)
    allowed = sum(r.status == 200 for r in answers)
    assert allowed <= KEY_BURST + KEY_PER_S * (time.monotonic() - started) + 1   # one bucket, not one per worker
    stack = solo_stack.stack
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switch", "merchants", "create", "--name", "lifted", "--per-s", "1000", "--quiet",
        env={**os.environ, **stack.switch_env()}, stdout=asyncio.subprocess.PIPE)
    lifted_key = (await proc.communicate())[0].decode().strip().splitlines()[-1]
    lifted = await _burst(switch.url, lifted_key, 4 * KEY_BURST, connections=8)
    assert all(r.status == 200 for r in lifted)
