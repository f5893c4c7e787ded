"""Velocity windows against the real Redis with the switch's clock moved by hand: counts within a window,
the sliding estimate across a window's boundary, counts more than two windows old gone, declines and
the distinct cards of an address."""

from __future__ import annotations

import secrets
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
