"""A worker killed while its webhook attempts are in flight: after the supervisor starts it again, every
event is delivered, and those that were in flight at the kill come again with the same webhook-id (the
receiver drops them as duplicates). Its cursor's lease is the worker slot's, so the new worker takes it back
at once instead of waiting for it to run out."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from switch.common import http
from switch.dev.devstack import free_port
from tests.integration.helpers import key, luhn_card, payment
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration


class HeldReceiver:
    """Takes every attempt and holds its answer until released; then answers 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[str] = []            # webhook-id of every attempt, in order
        self.accepted: set[str] = set()      # answered 200
        self.release = asyncio.Event()

    async def handle(self, request: http.Request) -> http.Response:
        message = request.header("webhook-id") or ""
        self.seen.append(message)
        await self.release.wait()
        self.accepted.add(message)
        return http.Response(200, b"{}")


async def test_events_in_flight_when_a_worker_dies_are_delivered_again_with_the_same_id(
        solo_stack: SoloStack) -> None:
    receiver = HeldReceiver()
    server = await http.serve(receiver.handle, "127.0.0.1", receiver.port)
    switch = solo_stack.start_switch("switch-webhook-kill", {"SWITCH_WEBHOOKS_ALLOW_LOOPBACK": "1"})
    client = solo_stack.client(switch)
    pool = await solo_stack.pool()
    try:
        made = await client.request("POST", "/v1/webhook_endpoints", {
            "url": f"http://127.0.0.1:{receiver.port}/held", "enabled_events": ["payment.succeeded"]})
        assert made.status == 200, made.body
        sales = [await client.request("POST", "/v1/payments", payment(1900 + n, luhn_card("4571"), "automatic"),
                                      idempotency_key=key("wh-kill")) for n in range(12)]
        assert {sale.status for sale in sales} == {200}
        deadline = time.monotonic() + 15
        while not receiver.seen:                                  # attempts in flight, held
            assert time.monotonic() < deadline, "no attempt came"
            await asyncio.sleep(0.05)
        in_flight = set(receiver.seen)
        (worker,) = switch.worker_pids()
        os.kill(worker, signal.SIGKILL)
        killed_at = len(receiver.seen)
        deadline = time.monotonic() + 20
        while switch.worker_pids() in ([], [worker]):             # the supervisor starts another
            assert time.monotonic() < deadline, "the worker was not started again"
            await asyncio.sleep(0.1)
        receiver.release.set()
        events = {f"evt_{row['id']:016d}" for row in await pool.fetch(
            "SELECT e.id FROM events e JOIN webhook_endpoints w USING (merchant_id) "
            "WHERE w.id = $1 AND e.type = 'payment.succeeded' AND e.created_at >= w.created_at", made.json()["id"])}
        assert len(events) == 12
        deadline = time.monotonic() + 20                          # well within the 30 s lease
        while not events <= set(receiver.seen[killed_at:]) & receiver.accepted:   # by the new worker
            assert time.monotonic() < deadline, f"not delivered: {sorted(events - set(receiver.seen[killed_at:]))}"
            await asyncio.sleep(0.1)
        assert in_flight <= events                                # sent before the kill and again after it
    finally:
        receiver.release.set()
        await client.close()
        await pool.close()
        solo_stack.stop_switch(switch)
        server.close()
