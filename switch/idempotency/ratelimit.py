"""Rate limits: a token bucket per API key and one per client address, shared by every worker in Redis.

One Lua script takes a token from both buckets of a request at once (or neither, when either is empty)
and answers how long to wait. It rides the same Redis pipeline as the request's idempotency lock, so a
payment pays no round trip for it. Redis unreachable: the limiter lets the request through (the
idempotency lock fails closed anyway).

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

# KEYS: the buckets; ARGV: rate_per_s and burst of each bucket, in order. Returns 0 (a token was taken
# from every bucket) or the milliseconds until every bucket holds one again (nothing taken).
BUCKET_SCRIPT = """
local clock = redis.call('TIME')
local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
local wait_ms, tokens = 0, {}
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local saved = redis.call('HMGET', KEYS[i], 't', 'ts')
  local left, since = tonumber(saved[1]), tonumber(saved[2])
  if left == nil then left, since = burst, now_ms end
  left = math.min(burst, left + math.max(0, now_ms - since) * rate / 1000)
  if left < 1 then wait_ms = math.max(wait_ms, math.ceil((1 - left) * 1000 / rate)) end
  tokens[i] = left
end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local left = tokens[i]
  if wait_ms == 0 then left = left - 1 end
  redis.call('HSET', KEYS[i], 't', tostring(left), 'ts', now_ms)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rate) + 1000)
end
return wait_ms
"""


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

    def _buckets(self, key_digest: bytes | None, address: str, key_per_s: int | None,
                 key_burst: int | None) -> list[object]:
        """The script's key count, keys and arguments for one request."""
        limits = self.limits
        keys: list[object] = [f"rl:a:{address}"]
        args: list[object] = [limits.address_per_s, limits.address_burst]
        if key_digest is not None:
            keys.append(f"rl:k:{key_digest[:12].hex()}")
            args += [key_per_s or limits.key_per_s, key_burst or limits.key_burst]
        return [len(keys), *keys, *args]

    def admit(self, key_digest: bytes | None, address: str, key_per_s: int | None = None,
              key_burst: int | None = None) -> Admission:
        """Queue the request's take on the next pipeline (no await: it leaves with whatever else this loop
        pass sends, the idempotency lock of the same request included); `Admission.wait_ms` reads it."""
        buckets = self._buckets(key_digest, address, key_per_s, key_burst)
        try:
            future = self.commands.enqueue("EVALSHA", self.script_sha, *buckets)
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
