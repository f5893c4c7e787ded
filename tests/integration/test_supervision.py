"""Every process is supervised: the dev stack starts a dead child again (vault, simulator, databases,
switch) after a backoff, stops everything when one keeps dying, and the switch heals by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter

import pytest

from loadtest.httpclient import HttpResponse
from switch.dev import devstack
from switch.dev.devstack import Stack, StackError
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment
from tests.integration.solo import SoloStack, eventually

pytestmark = pytest.mark.integration


def test_a_dead_child_is_reaped_and_started_again_until_it_keeps_dying(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(devstack, "RESTART_DELAY_S", 0.01)
    stack = Stack(run_dir=tmp_path)
    flaky = stack.spawn("flaky", [sys.executable, "-c", "raise SystemExit(3)"])
    steady = stack.spawn("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        flaky.process.wait(timeout=10)
        restarted = []
        with pytest.raises(StackError, match="flaky exited .* times"):
            for _ in range(devstack.RESTARTS_MAX + 2):
                restarted += stack.supervise()
                next(s for s in stack.services if s.name == "flaky").process.wait(timeout=10)
        assert restarted == ["flaky"] * devstack.RESTARTS_MAX
        assert steady.process.poll() is None                       # the healthy one was left alone
        assert not os.path.exists(f"/proc/{flaky.process.pid}")    # reaped: no zombie left behind
    finally:
        stack.stop()


async def test_the_vault_killed_mid_run_is_restarted_and_payments_heal(solo_stack: SoloStack) -> None:
    switch = solo_stack.start_switch("switch-vault-kill")
    client = solo_stack.client(switch)
    number = luhn_card("47")
    stack = solo_stack.stack
    vault = next(s for s in stack.services if s.name == "vault")
    answers: list[HttpResponse] = []

    async def pay() -> HttpResponse:
        response = await client.request("POST", "/v1/payments", payment(300, number, "automatic"),
                                        idempotency_key=key("vault-kill"), timeout_s=15)
        answers.append(response)
        return response

    try:
        assert (await pay()).status == 200
        os.kill(vault.process.pid, signal.SIGKILL)
        await asyncio.to_thread(vault.process.wait, 10)
        down = await asyncio.gather(*(pay() for _ in range(20)))
        assert {r.status for r in down} == {503}
        assert {r.json()["error"]["code"] for r in down} == {"vault_unavailable"}
        assert await asyncio.to_thread(stack.supervise) == ["vault"]

        async def healed() -> bool:
            return (await pay()).status == 200

        assert await eventually(healed, 20.0, interval_s=0.25)
    finally:
        await client.close()
        solo_stack.stop_switch(switch)
    statuses = Counter(r.status for r in answers)
    assert set(statuses) <= {200, 503}, statuses
    log = switch.service.log_path.read_text()
    assert log.count("vault unavailable") == 1 and "vault available again" in log, log[-3000:]
    summary = simulator(stack, f"/summary?card_last4={number[-4:]}")
    assert summary["charged_once"], summary["charged_more_than_once"]


async def test_redis_killed_mid_run_is_restarted_and_payments_heal(solo_stack: SoloStack) -> None:
    """Redis dies (SIGKILL, its data gone: it keeps none): the switch fails closed with 503
    idempotency_unavailable, the stack starts Redis again, and payments go through again by themselves;
    Postgres still guards every key, so nothing is charged twice."""
    switch = solo_stack.start_switch("switch-redis-kill")
    client = solo_stack.client(switch)
    number = luhn_card("48")
    stack = solo_stack.stack
    redis = next(s for s in stack.services if s.name == "redis")
    keys = [key("redis-kill") for _ in range(30)]
    answers: dict[str, list[HttpResponse]] = {k: [] for k in keys}

    async def pay(idem: str) -> HttpResponse:
        response = await client.request("POST", "/v1/payments", payment(310, number, "automatic"),
                                        idempotency_key=idem, timeout_s=15)
        answers[idem].append(response)
        return response

    try:
        assert all(r.status == 200 for r in await asyncio.gather(*(pay(k) for k in keys[:10])))
        os.kill(redis.process.pid, signal.SIGKILL)
        await asyncio.to_thread(redis.process.wait, 10)
        down = await asyncio.gather(*(pay(k) for k in keys[10:20]))
        assert {r.status for r in down} == {503}
        assert {r.json()["error"]["code"] for r in down} == {"idempotency_unavailable"}
        assert await asyncio.to_thread(stack.supervise) == ["redis"]

        async def healed() -> bool:
            return all(r.status == 200 for r in await asyncio.gather(*(pay(k) for k in keys[10:])))

        assert await eventually(healed, 20.0, interval_s=0.25)
        # The keys that went through before the kill replay from Postgres: the same answer, no new charge.
        for idem in keys[:10]:
            replay = await pay(idem)
            assert (replay.status, replay.body) == (200, answers[idem][0].body)
    finally:
        await client.close()
        solo_stack.stop_switch(switch)
    assert {r.status for rs in answers.values() for r in rs} <= {200, 503}
    summary = simulator(stack, f"/summary?card_last4={number[-4:]}")
    # Written out in full: pytest would cut the dict short, and by_rrn is what tells a stray message apart.
    assert summary["charged_once"] and summary["transactions"] == len(keys), json.dumps(summary, indent=1)
