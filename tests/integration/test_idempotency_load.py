"""1,000 idempotency keys, each sent 20 times at once (200 connections): one network authorization per
key, checked at the simulator, and every other answer a retryable 409 or a byte-identical replay."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from loadtest.httpclient import Client, HttpResponse
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment

pytestmark = pytest.mark.integration

KEYS = 1000
DUPLICATES = 20
CONNECTIONS_MAX = 200


async def test_duplicates_charge_exactly_once_per_key(stack, db) -> None:
    number = luhn_card("51")
    keys = [key("load") for _ in range(KEYS)]
    # One card for the whole run: 1,000 sales of 1.00 stay within the simulator's balance per card.
    body = payment(100, number, "automatic")
    client = Client(stack.switch_url, stack.api_key)
    slots = asyncio.Semaphore(CONNECTIONS_MAX)
    answers: dict[str, list[HttpResponse]] = defaultdict(list)

    async def send(idempotency_key: str) -> None:
        async with slots:
            answers[idempotency_key].append(
                await client.request("POST", "/v1/payments", body, idempotency_key=idempotency_key, timeout_s=30))

    started = time.monotonic()
    try:
        # Each key's 20 copies are queued back to back, so they are in flight together.
        await asyncio.gather(*(send(k) for k in keys for _ in range(DUPLICATES)))
        # Once all are answered, one more copy of each is a replay of the stored answer.
        late = await asyncio.gather(*(client.request("POST", "/v1/payments", body, idempotency_key=k, timeout_s=30)
                                      for k in keys[:CONNECTIONS_MAX]))
    finally:
        await client.close()
    elapsed_s = time.monotonic() - started
    print(f"{KEYS * DUPLICATES} requests in {elapsed_s:.1f}s ({KEYS * DUPLICATES / elapsed_s:.0f}/s)")

    conflicts = replays = 0
    for idempotency_key, responses in answers.items():
        assert len(responses) == DUPLICATES
        successes = [r for r in responses if r.status == 200]
        assert successes, f"{idempotency_key}: no 200 among {sorted(r.status for r in responses)}"
        assert all(r.body == successes[0].body for r in successes), idempotency_key
        replays += sum(r.headers.get("idempotent-replayed") == "true" for r in successes)
        for response in responses:
            if response.status == 409:
                conflicts += 1
                error = response.json()["error"]
                assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_in_use")
            else:
                assert response.status == 200, response.body
    assert conflicts + replays == KEYS * (DUPLICATES - 1)
    for idempotency_key, replay in zip(keys, late, strict=False):
        first = next(r for r in answers[idempotency_key] if r.status == 200)
        assert (replay.status, replay.body, replay.headers.get("idempotent-replayed")) == (200, first.body, "true")
    print(f"{conflicts} conflicts (409), {replays} replays")

    rows = await db.fetch("SELECT k.idempotency_key, p.rrn, p.status FROM idempotency_keys k "
                          "JOIN payments p ON p.id = k.payment_id WHERE k.idempotency_key = ANY($1::text[])", keys)
    assert len(rows) == KEYS and all(row["status"] == "succeeded" for row in rows)
    # At the network: one 0200 per key, no more, and nothing charged twice.
    records = simulator(stack, f"/records?card_last4={number[-4:]}&limit={KEYS}")["records"]
    assert sorted(record["rrn"] for record in records) == sorted(row["rrn"] for row in rows)
    assert all(record["mti"] == "0200" for record in records)
    summary = simulator(stack, f"/summary?card_last4={number[-4:]}")
    assert summary["charged_once"] and summary["transactions"] == KEYS, summary["charged_more_than_once"]
