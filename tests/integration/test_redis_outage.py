"""Redis stopped in the middle of a load of payments: the switch fails closed (503
`idempotency_unavailable`, retryable) and never processes without the lock; nothing is charged twice at
the simulator, and once Redis is back every key is answered (the ones that went through, from their
stored response). On the dedicated stack, whose redis-server is stopped with SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter

import pytest

from loadtest.httpclient import HttpResponse
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment
from tests.integration.solo import SoloStack, eventually

pytestmark = pytest.mark.integration

BEFORE, DURING_STOP, AFTER_STOP = 40, 40, 20
RECOVERY_WAIT_S = 20.0


async def test_redis_stopped_mid_run_fails_closed_and_charges_once(solo_stack: SoloStack) -> None:
    switch = solo_stack.start_switch("switch-redis-outage")
    client = solo_stack.client(switch)
    number = luhn_card("52")
    keys = [key("outage") for _ in range(BEFORE + DURING_STOP + AFTER_STOP)]
    bodies = {k: payment(300 + index, number, "automatic") for index, k in enumerate(keys)}
    redis_pid = solo_stack.redis_process.pid

    async def send(idempotency_key: str) -> HttpResponse:
        return await client.request("POST", "/v1/payments", bodies[idempotency_key],
                                    idempotency_key=idempotency_key, timeout_s=15)

    try:
        first = await asyncio.gather(*(send(k) for k in keys[:BEFORE]))
        assert all(r.status == 200 for r in first)
        # Stop Redis while the next batch is in flight, then send more while it is stopped.
        batch = asyncio.gather(*(send(k) for k in keys[BEFORE:BEFORE + DURING_STOP]))
        await asyncio.sleep(0.005)
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            during = await batch
            stopped = await asyncio.gather(*(send(k) for k in keys[BEFORE + DURING_STOP:]))
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        assert {r.status for r in during} <= {200, 503}
        assert stopped and all(r.status == 503 for r in stopped)
        for response in (r for r in [*during, *stopped] if r.status == 503):
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("api_error", "idempotency_unavailable")
        print("while Redis was stopped:", Counter(r.status for r in [*during, *stopped]))

        # Redis is back: every key is answered once its stale lock (if any) expires.
        async def all_answered() -> list[HttpResponse]:
            answers = await asyncio.gather(*(send(k) for k in keys[BEFORE:]))
            return answers if all(r.status == 200 for r in answers) else []

        assert await eventually(all_answered, RECOVERY_WAIT_S, interval_s=0.5)
        # The outage is logged once when it starts and once when it ends, with what it refused.
        log = switch.service.log_path.read_text()
        assert log.count("redis unavailable") == 1, log[-3000:]
        assert re.search(r"redis available again after [\d.]+ s; [1-9]\d* requests refused", log), log[-3000:]
        for idempotency_key, response in zip(keys[BEFORE:BEFORE + DURING_STOP], during, strict=True):
            if response.status == 200:      # it went through before the stop: the retry is its replay
                replay = await send(idempotency_key)
                assert (replay.status, replay.body) == (200, response.body)
    finally:
        await client.close()
        solo_stack.stop_switch(switch)

    # One authorization per key at the network, and none twice.
    records = simulator(solo_stack.stack, f"/records?card_last4={number[-4:]}&limit=1000")["records"]
    assert len(records) == len(keys) and len({r["rrn"] for r in records}) == len(keys)
    summary = simulator(solo_stack.stack, f"/summary?card_last4={number[-4:]}")
    assert summary["charged_once"] and summary["transactions"] == len(keys), summary["charged_more_than_once"]
