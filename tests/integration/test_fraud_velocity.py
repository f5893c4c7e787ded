"""Velocity windows against the real Redis with the switch's clock moved by hand: counts within a window,
the sliding estimate across a window's boundary, counts more than two windows old gone, declines and
the distinct cards of an address."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
import redis.asyncio as redis

from switch.dev.devstack import Stack
from switch.fraud.velocity import Velocity, read
from switch.idempotency.pipeline import RedisPipeliner
from tests.integration.helpers import luhn_card

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 86_400       # the start of a day: every window starts with it


async def test_windows_slide_across_their_boundaries(base_stack: Stack) -> None:
    now = [T0]
    commands = RedisPipeliner(redis.Redis.from_url(base_stack.redis_url))
    velocity = Velocity(commands, secrets.token_bytes(32), clock=lambda: now[0])
    await commands.load_scripts()
    subjects = velocity.subjects(f"acct_{secrets.token_hex(6)}", luhn_card("4571"), "192.0.2.10", None)

    async def attempt(at_s: float, cents: int = 500) -> dict[str, Any]:
        now[0] = T0 + at_s
        values: dict[str, Any] = {}
        read(subjects, await velocity.attempt(subjects, cents, cents < 500), values)  # type: ignore[arg-type]
        return values

    try:
        first = await attempt(0)
        assert (first["card_velocity_1m"], first["card_velocity_1h"], first["card_amount_usd_1h"]) == (1, 1, 5.0)
        assert (await attempt(30))["card_velocity_1m"] == 2
        # 15 s into the next minute: the last one's two count at (60 - 15) / 60 of their weight.
        assert (await attempt(75))["card_velocity_1m"] == int(2 * 0.75 + 1)
        assert (await attempt(200))["card_velocity_1m"] == 1  # two windows after the last one: only itself
        assert (await attempt(250))["card_velocity_1m"] == int(1 * (1 - 10 / 60) + 1)
        hour = await attempt(340, cents=100)
        assert (hour["card_velocity_1h"], hour["card_amount_usd_1h"]) == (6, 26.0)   # one window: exact
        assert hour["merchant_small_1m"] == 1
        velocity.decline(subjects)
        after_decline = await attempt(350)
        assert after_decline["card_declines_1h"] == 1 and after_decline["ip_declines_1h"] == 1
        assert after_decline["ip_cards_1h"] == 1                # one card, however often
        assert (await attempt(86_400 * 3))["card_velocity_24h"] == 1
    finally:
        await commands.close()
        await commands.client.aclose()


async def test_an_address_counts_its_distinct_cards_over_the_last_hour_up_to_64(base_stack: Stack) -> None:
    now = [T0]
    commands = RedisPipeliner(redis.Redis.from_url(base_stack.redis_url))
    velocity = Velocity(commands, secrets.token_bytes(32), clock=lambda: now[0])
    await commands.load_scripts()
    merchant = f"acct_{secrets.token_hex(6)}"

    async def cards_seen(at_s: float, card: str) -> int:
        now[0] = T0 + at_s
        subjects = velocity.subjects(merchant, velocity.card_hash(card), "198.51.100.7", None)
        values: dict[str, Any] = {}
        read(subjects, await velocity.attempt(subjects, 500, False), values)  # type: ignore[arg-type]
        return int(values["ip_cards_1h"])

    first, second = luhn_card("4571"), luhn_card("4571")
    try:
        assert await cards_seen(0, first) == 1
        assert await cards_seen(600, second) == 2
        assert await cards_seen(1200, first) == 2                  # the same card again: still two
        assert await cards_seen(600 + 3601, luhn_card("4571")) == 2  # the second one is over an hour old
        counts = [await cards_seen(5000 + i, luhn_card("4571")) for i in range(70)]
        assert counts[-7:] == [64] * 7 and max(counts) == 64        # a burst past 64 stays at 64
    finally:
        await commands.close()
        await commands.client.aclose()


async def test_the_counters_ride_the_lock_and_count_only_when_it_is_taken(base_stack: Stack) -> None:
    """One command for the lock and the counters; a request whose key is held (a retry, a replay) counts
    nothing, and a request over its rate limit neither locks nor counts."""
    import asyncpg

    from switch.idempotency.lock import Idempotency

    client = redis.Redis.from_url(base_stack.redis_url)
    pool = await asyncpg.create_pool(base_stack.database_url, min_size=1, max_size=2)
    idempotency = Idempotency(client, pool, secrets.token_bytes(32), 30, 60)
    now = time.time()
    velocity = Velocity(idempotency.commands, secrets.token_bytes(32), clock=lambda: now)   # no hour's edge
    await idempotency.commands.load_scripts()
    subjects = velocity.subjects(f"acct_{secrets.token_hex(6)}", velocity.card_hash(luhn_card("4571")), None, None)
    fingerprint = secrets.token_bytes(32)
    try:
        names = [f"idem:test:{secrets.token_hex(8)}", f"idem:test:{secrets.token_hex(8)}"]
        counts = []
        for name in names:
            got = await idempotency.acquire("m", "k", fingerprint, name, None, velocity.rider(subjects, 500, False))
            assert got.taken and isinstance(got.rider_answer, list)
            values: dict[str, Any] = {}
            read(subjects, got.rider_answer, values)
            counts.append(values["card_velocity_1h"])
        held = await idempotency.acquire("m", "k", fingerprint, names[1], None, velocity.rider(subjects, 500, False))
        assert not held.taken and held.rider_answer is None                # the key is held: nothing counted
        assert counts == [1, 2]
        values = {}
        read(subjects, await velocity.attempt(subjects, 500, False), values)  # type: ignore[arg-type]
        assert values["card_velocity_1h"] == 3                                  # the held key added none
        assert idempotency.commands.batches.items == 4                          # one command each
        await client.delete(subjects.keys[0])
        await client.hset(subjects.keys[0], "not", "a counter")                  # the rider will fail on it
        broken = await idempotency.acquire("m", "k", fingerprint, f"idem:test:{secrets.token_hex(8)}", None,
                                           velocity.rider(subjects, 500, False))
        assert broken.taken and broken.rider_answer is None                     # the lock is the request's
    finally:
        await idempotency.commands.close()
        await client.aclose()
        await pool.close()
