"""Webhook drill: payments on the real stack (sales, authorizations captured or voided, refunds, declines)
with one endpoint subscribed to every event, behind a receiver that fails FAILURE_RATE of the attempts
at random (500) and verifies every signature with the Standard Webhooks reference library. Prints one line:

    WEBHOOKS events=<n> delivered=<n> lost=<k> duplicates=<d> bad_signatures=<b> max_lag_s=<x>

`events` counts the merchant's events (GET /v1/events); `delivered` the distinct events the receiver
accepted (a 2xx); `lost` the events never accepted by the end; `duplicates` accepted twice (at least once
allows them; they share their webhook-id); `max_lag_s` the longest time from an event to its acceptance.
The stack runs with a short retry schedule (0.2 s, then doubling), so three days of retries fit a
drill. Bounded: PAYMENTS payments (--payments), DRAIN_TIMEOUT_S for the deliveries to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest.fraud_drill import luhn_card
from loadtest.httpclient import Client
from loadtest.stacks import run_on_stack

PAYMENTS = 400
CONNECTIONS = 16
FAILURE_RATE = 0.3
DRAIN_TIMEOUT_S = 60.0
RETRY_SCHEDULE_S = "0.2,0.4,0.8,1.6,3.2"
DECLINE_CARD = "4000000000000002"


@dataclass
class Receiver:
    secret: str = ""
    rng: random.Random = field(default_factory=random.Random)
    accepted: Counter[str] = field(default_factory=Counter)
    accepted_at: dict[str, float] = field(default_factory=dict)
    bad_signatures: int = 0
    attempts: int = 0

    async def handle(self, request: Any) -> Any:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        from switch.common import http

        self.attempts += 1
        try:
            event = Webhook(self.secret).verify(request.body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return http.Response(400, b'{"error":"bad signature"}')
        if event["id"] != request.header("webhook-id"):
            self.bad_signatures += 1
        if self.rng.random() < FAILURE_RATE:
            return http.Response(500, b'{"error":"flaky"}')
        self.accepted[event["id"]] += 1
        self.accepted_at.setdefault(event["id"], time.time())
        return http.Response(200, b"{}")


async def _post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return await client.request("POST", path, body, idempotency_key=secrets.token_hex(12))


def _body(amount: int, capture: str, number: str | None = None) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "capture_method": capture,
            "payment_method": {"card": {"number": number or luhn_card("4571"), "exp_month": 11, "exp_year": 2031}}}


async def _customer(client: Client, rng: random.Random) -> None:
    amount = rng.randint(500, 20_000)
    kind = rng.random()
    if kind < 0.1:
        await _post(client, "/v1/payments", _body(amount, "automatic", DECLINE_CARD))
        return
    if kind < 0.55:
        sale = (await _post(client, "/v1/payments", _body(amount, "automatic"))).json()
        if rng.random() < 0.3 and "id" in sale:
            await _post(client, "/v1/refunds", {"payment": sale["id"], "amount": rng.randint(100, amount)})
        return
    held = (await _post(client, "/v1/payments", _body(amount, "manual"))).json()
    if "id" in held:
        action = "cancel" if rng.random() < 0.2 else "capture"
        await _post(client, f"/v1/payments/{held['id']}/{action}", {})


async def _all_events(client: Client) -> list[dict[str, Any]]:
    events, cursor = [], ""
    while True:
        page = (await client.request("GET", f"/v1/events?limit=100{cursor}")).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        cursor = f"&starting_after={page['data'][-1]['id']}"


async def drill(stack: Any, seed: int, payments: int = PAYMENTS) -> int:
    from switch.common import http
    from switch.dev.devstack import free_port

    rng = random.Random(seed)
    receiver = Receiver(rng=random.Random(seed + 1))
    port = free_port()
    server = await http.serve(receiver.handle, "127.0.0.1", port)
    client = Client(stack.switch_url, stack.api_key)
    try:
        made = await _post(client, "/v1/webhook_endpoints", {"url": f"http://127.0.0.1:{port}/drill",
                                                              "enabled_events": ["*"]})
        receiver.secret = made.json()["secret"]
        for _ in range(payments // CONNECTIONS):
            await asyncio.gather(*(_customer(client, rng) for _ in range(CONNECTIONS)))
        events = {event["id"]: event["created"] for event in await _all_events(client)}
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while set(events) - set(receiver.accepted) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await client.close()
        server.close()
    lost = len(set(events) - set(receiver.accepted))
    duplicates = sum(count - 1 for count in receiver.accepted.values())
    lags = [receiver.accepted_at[e] - created for e, created in events.items() if e in receiver.accepted_at]
    print(f"{receiver.attempts} attempts for {len(events)} events ({FAILURE_RATE:.0%} answered 500 at random)")
    print(f"WEBHOOKS events={len(events)} delivered={len(set(events) & set(receiver.accepted))} lost={lost} "
          f"duplicates={duplicates} bad_signatures={receiver.bad_signatures} "
          f"max_lag_s={max(lags, default=0.0):.1f}", flush=True)
    return 0 if lost == 0 and receiver.bad_signatures == 0 and events else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.webhook_drill", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--payments", type=int, default=PAYMENTS, help="how many customers pay (about 1.7 "
                        "events each)")
    args = parser.parse_args(argv)
    import uvloop

    from switch.dev.devstack import Stack, new_run_dir

    stack = Stack(run_dir=new_run_dir(), address_rate_limit_per_s=1_000_000, merchant_rate_limit_per_s=1_000_000,
                  fraud_rules="lists", switch_server_env={"SWITCH_WEBHOOK_RETRY_SCHEDULE_S": RETRY_SCHEDULE_S})
    return run_on_stack("webhook-drill", stack, lambda s: s.start_all(workers=2),
                        lambda s: int(uvloop.run(drill(s, args.seed, args.payments))))


if __name__ == "__main__":
    sys.exit(main())
