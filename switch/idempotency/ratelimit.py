"""Rate limits: a token bucket per API key and one per client address, shared by every worker in Redis.

One Lua script takes a token from both buckets of a request at once (or neither, when either is empty)
and answers how long to wait; for a mutating request the same script also takes the idempotency lock
(LOCK_SCRIPT), so a payment pays neither a round trip nor a command of its own for it. Redis
unreachable: the limiter lets a read through (the idempotency lock of a mutating request fails closed).

Defaults: 100 requests/s per API key with a burst of 200, as Stripe allows about 100 per second per key in
live mode, with room for a batch job's bursts; 200/s per address with a burst of 400, since one client
(a platform, a POS gateway) may carry several keys. A merchant's own limit is set with
`switch merchants limit`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.exceptions import RedisError

from switch.idempotency.pipeline import RedisPipeliner

# take(k, a): take a token from every bucket KEYS[k..] (their rate_per_s and burst in ARGV[a..], in pairs),
# or from none; answers 0 (taken) or the milliseconds until every bucket holds one again.
_TAKE = """
local function take(first_key, first_arg)
  local clock = redis.call('TIME')
  local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
  local wait_ms, tokens = 0, {}
  for i = first_key, #KEYS do
    local at = first_arg + 2 * (i - first_key)
    local rate, burst = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local saved = redis.call('GET', KEYS[i])
    local left, since = burst, now_ms
    if saved then
      local colon = string.find(saved, ':', 1, true)
      left, since = tonumber(string.sub(saved, 1, colon - 1)), tonumber(string.sub(saved, colon + 1))
    end
    left = math.min(burst, left + math.max(0, now_ms - since) * rate / 1000)
    if left < 1 then wait_ms = math.max(wait_ms, math.ceil((1 - left) * 1000 / rate)) end
    tokens[i] = left
  end
  for i = first_key, #KEYS do
    local at = first_arg + 2 * (i - first_key)
    local rate, burst = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local left = tokens[i]
    if wait_ms == 0 then left = left - 1 end
    -- One string per bucket, "tokens:updated_ms", kept until a full refill would have happened anyway.
    redis.call('SET', KEYS[i], string.format('%.3f:%d', left, now_ms), 'PX', math.ceil(burst * 1000 / rate) + 1000)
  end
  return wait_ms
end
"""
# A read, or a request without a valid key: KEYS are the buckets.
BUCKET_SCRIPT = _TAKE + "return take(1, 1)\n"
# A mutating request: the rate-limit take and the idempotency lock in one command. KEYS[1] is the lock
# (ARGV[1] its value, ARGV[2] its TTL), KEYS[2..] the buckets. Over the limit: {wait_ms, nil}, and no lock;
# else as SET NX GET EX: {0, nil} when the lock was taken, {0, previous value} when the key was held.
LOCK_SCRIPT = _TAKE + """
local wait_ms = take(2, 3)
if wait_ms > 0 then return {wait_ms, false} end
local previous = redis.call('GET', KEYS[1])
if not previous then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return {0, previous}
"""


@dataclass(frozen=True, slots=True)
class Buckets:
    """The buckets one request takes from: their Redis keys, and each one's rate and burst."""

    keys: list[object]
    args: list[object]


@dataclass(frozen=True, slots=True)
class Limits:
    key_per_s: int = 100
    key_burst: int = 200
    address_per_s: int = 200
    address_burst: int = 400


class RateLimiter:
    def __init__(self, commands: RedisPipeliner, limits: Limits) -> None:
        self.commands = commands
        self.limits = limits
        self.script_sha = commands.register_script(BUCKET_SCRIPT)

    def buckets(self, key_digest: bytes | None, address: str, key_per_s: int | None = None,
                key_burst: int | None = None) -> Buckets:
        """The address's bucket, and the API key's when the key is known (with the merchant's own limit)."""
        limits = self.limits
        keys: list[object] = [f"rl:a:{address}"]
        args: list[object] = [limits.address_per_s, limits.address_burst]
        if key_digest is not None:
            keys.append(f"rl:k:{key_digest[:12].hex()}")
            args += [key_per_s or limits.key_per_s, key_burst or limits.key_burst]
        return Buckets(keys, args)

    def admit(self, buckets: Buckets) -> Admission:
        """Queue a take on the next pipeline (a read's: a mutating request's take rides its idempotency
        lock, switch.idempotency.lock); `Admission.wait_ms` reads the answer."""
        try:
            future = self.commands.enqueue("EVALSHA", self.script_sha, len(buckets.keys), *buckets.keys,
                                           *buckets.args)
        except RedisError:
            future = asyncio.get_running_loop().create_future()
            future.set_result(0)                        # too much queued for Redis: the lock will say so
        return Admission(future)


@dataclass(slots=True)
class Admission:
    """One request's pending take from its buckets."""

    future: asyncio.Future[object]

    async def wait_ms(self) -> int:
        """0 when the request may go on, else how long until it may; 0 too when Redis cannot say."""
        try:
            result = await self.future
        except (RedisError, OSError):
            return 0
        return int(result) if isinstance(result, int) else 0
