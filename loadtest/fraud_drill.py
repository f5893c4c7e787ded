"""Fraud drill: legitimate customers paying beside a scripted card-testing attack and a stolen-card spree,
on the real stack, with every merchant on the default rules. Prints one line:

    FRAUD attack_blocked_pct=<x> legit_blocked_or_reviewed_pct=<y> fraud_step_us=<z>

- legitimate traffic: LEGIT_CUSTOMERS customers, each with a card, an address and an email of their own,
  paying 1 to 3 times (5 to 300 dollars) at any of three shops;
- card testing: TESTING_CARDS distinct cards from one address, 0.50 to 2 dollars each, at one shop;
- a stolen-card spree: one card, SPREE_ATTEMPTS attempts of 20 to 900 dollars across the three shops,
  from changing addresses.
All three run at once. An attack attempt counts as blocked when it is answered 402 `fraudulent`; a
legitimate one as blocked or reviewed when it is answered so or held for review. `fraud_step_us` is the
screen's mean time per payment (its wait for the Redis counters included), from /metrics.
Bounded: a fixed number of requests, at most DRILL_TIMEOUT_S.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from loadtest.httpclient import Client
from loadtest.stacks import run_on_stack
from switch.common.cards import luhn_valid

LEGIT_CUSTOMERS = 300
TESTING_CARDS = 200
SPREE_ATTEMPTS = 60
CONNECTIONS = 16
DRILL_TIMEOUT_S = 120.0


def luhn_card(prefix: str, length: int = 16) -> str:
    """A random card number with a valid check digit (the simulator approves it in a known BIN range)."""
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


@dataclass
class Tally:
    sent: int = 0
    blocked: int = 0
    reviewed: int = 0
    other: dict[int, int] = field(default_factory=dict)


def _body(number: str, cents: int, ip: str, email: str | None = None) -> dict[str, Any]:
    details: dict[str, str] = {"ip_address": ip}
    if email:
        details["email"] = email
    return {"amount": cents, "currency": "usd", "capture_method": "manual", "customer_details": details,
            "payment_method": {"card": {"number": number, "exp_month": 11, "exp_year": 2031, "cvc": "123"}}}


async def _pay(client: Client, body: dict[str, Any], tally: Tally, limit: asyncio.Semaphore) -> None:
    async with limit:
        answer = await client.request("POST", "/v1/payments", body, idempotency_key=secrets.token_hex(12))
    tally.sent += 1
    if answer.status == 402 and answer.json()["error"].get("decline_code") == "fraudulent":
        tally.blocked += 1
    elif answer.status == 200 and answer.json()["outcome"]["type"] == "manual_review":
        tally.reviewed += 1
    elif answer.status != 200:
        tally.other[answer.status] = tally.other.get(answer.status, 0) + 1


def _legit(clients: list[Client], rng: random.Random) -> list[tuple[Client, dict[str, Any]]]:
    work = []
    for n in range(LEGIT_CUSTOMERS):
        card, ip = luhn_card(rng.choice(["4571", "5412", "4917"])), f"198.51.{n // 250}.{n % 250 + 1}"
        for _ in range(rng.randint(1, 3)):
            work.append((rng.choice(clients), _body(card, rng.randint(500, 30_000), ip, f"customer{n}@example.org")))
    return work


def _testing(clients: list[Client], rng: random.Random) -> list[tuple[Client, dict[str, Any]]]:
    return [(clients[0], _body(luhn_card("4571"), rng.randint(50, 200), "203.0.113.66")) for _ in range(TESTING_CARDS)]


def _spree(clients: list[Client], rng: random.Random) -> list[tuple[Client, dict[str, Any]]]:
    card = luhn_card("4571")
    return [(rng.choice(clients), _body(card, rng.randint(2_000, 90_000), f"192.0.2.{rng.randint(1, 254)}"))
            for _ in range(SPREE_ATTEMPTS)]


async def drill(url: str, keys: list[str], ops_url: str) -> int:
    rng = random.Random(13)
    clients = [Client(url, key) for key in keys]
    legit, attack = Tally(), Tally()
    limit = asyncio.Semaphore(CONNECTIONS)
    work = [(client, body, legit) for client, body in _legit(clients, rng)]
    work += [(client, body, attack) for client, body in _testing(clients, rng) + _spree(clients, rng)]
    rng.shuffle(work)                       # the attacks run among the customers, not before or after them
    try:
        async with asyncio.timeout(DRILL_TIMEOUT_S):
            await asyncio.gather(*(_pay(client, body, tally, limit) for client, body, tally in work))
    finally:
        for client in clients:
            await client.close()
    await asyncio.sleep(1.5)                # the switch hands its screen counters to /metrics once a second
    step_us = await asyncio.to_thread(_screen_us, ops_url)
    print(f"legitimate: {legit.sent} sent, {legit.blocked} blocked, {legit.reviewed} reviewed, other {legit.other}")
    print(f"attacks:    {attack.sent} sent, {attack.blocked} blocked, {attack.reviewed} reviewed, other {attack.other}")
    attack_pct = 100 * attack.blocked / max(1, attack.sent)
    legit_pct = 100 * (legit.blocked + legit.reviewed) / max(1, legit.sent)
    print(f"FRAUD attack_blocked_pct={attack_pct:.1f} legit_blocked_or_reviewed_pct={legit_pct:.1f} "
          f"fraud_step_us={step_us:.0f}", flush=True)
    return 0 if not legit.other and not attack.other else 1


def _screen_us(ops_url: str) -> float:
    with urllib.request.urlopen(f"{ops_url}/metrics", timeout=5) as answer:   # noqa: S310 - loopback
        lines = answer.read().decode().splitlines()
    seconds = sum(float(line.split()[-1]) for line in lines if line.startswith("switch_fraud_screen_seconds_total"))
    screens = sum(float(line.split()[-1]) for line in lines if line.startswith("switch_fraud_decisions_total"))
    return 1e6 * seconds / screens if screens else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fraud_drill", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    import uvloop

    from switch.dev.devstack import Stack, new_run_dir

    def body(stack: Stack) -> int:
        keys = [stack.api_key, stack.seed_merchant("drill-shop-b"), stack.seed_merchant("drill-shop-c")]
        return int(uvloop.run(drill(stack.switch_url, keys, stack.switch_ops_url)))

    stack = Stack(run_dir=new_run_dir(), address_rate_limit_per_s=1_000_000, merchant_rate_limit_per_s=1_000_000)
    return run_on_stack("fraud-drill", stack, lambda s: s.start_all(workers=args.workers), body)

if __name__ == "__main__":
    sys.exit(main())
