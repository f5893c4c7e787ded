"""The rate limiter's leases against the real Redis: two workers' limiters share one bucket at the default
limits, most requests are answered from a lease without Redis, and no more than the burst gets through."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as redis

from switch.dev.devstack import Stack
from switch.idempotency.pipeline import RedisPipeliner
from switch.idempotency.ratelimit import Limits, RateLimiter

pytestmark = pytest.mark.integration

DIGEST = bytes(range(32))


async def _limiter(url: str) -> tuple[RateLimiter, RedisPipeliner]:
    commands = RedisPipeliner(redis.Redis.from_url(url))
    limiter = RateLimiter(commands, Limits())
    await commands.load_scripts()
    return limiter, commands


async def _admitted(limiter: RateLimiter, address: str, count: int) -> int:
    waits = await asyncio.gather(*(limiter.admit(limiter.buckets(DIGEST, address)).wait_ms() for _ in range(count)))
    return sum(1 for wait in waits if wait == 0)


async def test_two_workers_leases_never_let_more_than_the_burst_through(base_stack: Stack) -> None:
    first, first_commands = await _limiter(base_stack.redis_url)
    second, second_commands = await _limiter(base_stack.redis_url)
    try:
        await first_commands.client.delete(f"rl:k:{DIGEST[:12].hex()}")
        admitted, started = 0, time.monotonic()
        for _ in range(80):                     # both workers in turn; a key's burst is 200, 5 per lease
            admitted += await _admitted(first, "10.0.0.1", 1) + await _admitted(second, "10.0.0.2", 1)
        assert admitted == 160
        took_from_redis = first_commands.batches.items + second_commands.batches.items
        assert took_from_redis <= admitted / 3, took_from_redis     # most were spent from a lease
        for _ in range(40):
            admitted += await _admitted(first, "10.0.0.1", 4) + await _admitted(second, "10.0.0.2", 4)
        refill = 100 * (time.monotonic() - started)
        # The burst and the refill, less what the workers' leases still hold (at most 4 tokens each) and what
        # a stall of the loop lets go (a lease unspent for a second, the bucket full while the refill counts).
        assert 200 + refill - 40 <= admitted <= 200 + refill + 1, (admitted, refill)
    finally:
        await first_commands.close()
        await first_commands.client.aclose()
        await second_commands.close()
        await second_commands.client.aclose()


async def test_a_refused_request_gives_its_leased_token_back(base_stack: Stack) -> None:
    limiter, commands = await _limiter(base_stack.redis_url)
    try:
        address = "10.0.0.3"
        await commands.client.delete(limiter.address_bucket(address), f"rl:k:{DIGEST[:12].hex()}")
        assert await _admitted(limiter, address, 1) == 1
        lease = limiter.leases[limiter.address_bucket(address)]
        assert address not in limiter.address_bucket(address)              # no address in clear in Redis
        held = lease.tokens
        await commands.client.set(f"rl:k:{DIGEST[:12].hex()}", f"0.000:{10**15}", px=60_000)
        del limiter.leases[f"rl:k:{DIGEST[:12].hex()}"]     # the key's bucket is empty in Redis
        assert await limiter.admit(limiter.buckets(DIGEST, address)).wait_ms() > 0
        assert lease.tokens == held                          # the address's token came back
    finally:
        await commands.close()
        await commands.client.aclose()


async def test_a_request_refused_before_its_take_leaves_no_lease_pending(base_stack: Stack) -> None:
    limiter, commands = await _limiter(base_stack.redis_url)
    try:
        buckets = limiter.buckets(DIGEST, "10.0.0.4")       # e.g. then a 404 or a missing Idempotency-Key
        assert any(lease.pending for lease in limiter.leases.values())
        buckets.release()
        assert not any(lease.pending for lease in limiter.leases.values())
    finally:
        await commands.close()
        await commands.client.aclose()
