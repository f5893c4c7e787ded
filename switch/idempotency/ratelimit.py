"""Rate limits: a token bucket per API key and one per client address, shared by every worker in Redis.

The buckets live in Redis; each worker takes their tokens in small leases (a twentieth of a second's rate,
at most a tenth of the burst, at most 1,000) and spends a lease in memory, so most requests cost nothing on
Redis. A request whose buckets have no lease left takes one from Redis in one Lua script: from all its
buckets at once (or from none, when any is empty, answering how long to wait). For a mutating request the
same script also takes the idempotency lock (LOCK_SCRIPT), so the take has no command of its own. A lease
unspent after a second is dropped: a worker never spends tokens older than that. Redis unreachable: the
limiter lets a read through (the idempotency lock of a mutating request fails closed).

At the limits the tests use (a few per second), a lease is one token: every request takes from Redis and
the budget is exact across workers. At the defaults a worker holds at most 5 tokens of a key's bucket, so
a key may find itself refused while another worker still holds up to 4 of its tokens for under a second.

Defaults: 100 requests/s per API key with a burst of 200, as Stripe allows about 100 per second per key in
live mode, with room for a batch job's bursts; 200/s per address with a burst of 400, since one client
(a platform, a POS gateway) may carry several keys. A merchant's own limit is set with
`switch merchants limit`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from switch.idempotency.pipeline import RedisPipeliner

# take(k, last, a): from every bucket KEYS[k..last] (its rate_per_s, burst and wanted lease in ARGV[a..],
# in threes) take up to its wanted tokens, at least one each, or take from none. Answers {wait_ms,
# taken...}: wait_ms 0 and how many each bucket gave, or the milliseconds until every bucket holds a token.
_TAKE = """
local function take(first_key, last_key, first_arg)
  local clock = redis.call('TIME')
  local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
  local wait_ms, tokens = 0, {}
  for i = first_key, last_key do
    local at = first_arg + 3 * (i - first_key)
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
  local taken = {wait_ms}
  for i = first_key, last_key do
    local at = first_arg + 3 * (i - first_key)
    local rate, burst, wanted = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local left, got = tokens[i], 0
    if wait_ms == 0 then got = math.min(wanted, math.floor(left)) end
    taken[#taken + 1] = got
    -- One string per bucket, "tokens:updated_ms", kept until a full refill would have happened anyway.
    local keep_ms = math.ceil(burst * 1000 / rate) + 1000
    redis.call('SET', KEYS[i], string.format('%.3f:%d', left - got, now_ms), 'PX', keep_ms)
  end
  return taken
end
"""
# A read, or a request without a valid key: KEYS are the buckets; answers take's list.
BUCKET_SCRIPT = _TAKE + "return take(1, #KEYS, 1)\n"
# A mutating request: the take and the idempotency lock in one command. KEYS[1] is the lock (ARGV[1] its
# value, ARGV[2] its TTL), KEYS[2..] the buckets. Answers {wait_ms, previous, taken...}: over the limit,
# wait_ms > 0 and no lock; else as SET NX GET EX, previous nil when the lock was taken, or the key's value.
LOCK_SCRIPT = _TAKE + """
local taken = take(2, #KEYS, 3)
if taken[1] > 0 then return {taken[1], false} end
local previous = redis.call('GET', KEYS[1])
if not previous then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return {0, previous, unpack(taken, 2)}
"""


def lock_script_with(rider: str, call: str) -> str:
    """The lock, the request's rate-limit take (when it has buckets to take from in Redis) and a rider:
    Lua that runs only when the lock was taken (`call` is its call, e.g. ``velocity(first_key,
    first_arg)``, defined in `rider`). KEYS: the lock, the buckets (ARGV[3] of them), then the rider's;
    ARGV: the lock's value and TTL, the bucket count, three per bucket, then the rider's. Answers
    {wait_ms, previous, {wait_ms, taken...}, the rider's answer when the lock was taken}."""
    return _TAKE + rider + """
local buckets = tonumber(ARGV[3])
local taken = {0}
if buckets > 0 then taken = take(2, 1 + buckets, 4) end
if taken[1] > 0 then return {taken[1], false, taken} end
local previous = redis.call('GET', KEYS[1])
if previous then return {0, previous, taken} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local first_key, first_arg = 2 + buckets, 4 + 3 * buckets
-- A failing rider must not cost the request its lock: answer the lock without the rider's answer.
local ok, answer = pcall(function() return """ + call + """ end)
if not ok then return {0, false, taken} end
return {0, false, taken, answer}
"""


LEASE_MAX = 1_000
LEASE_S = 1.0
LEASES_MAX = 10_000            # buckets one worker holds a lease of; past it, expired leases are dropped


@dataclass(frozen=True, slots=True)
class Limits:
    key_per_s: int = 100
    key_burst: int = 200
    address_per_s: int = 200
    address_burst: int = 400


@dataclass(slots=True)
class Lease:
    tokens: int = 0
    expires: float = 0.0
    pending: bool = False      # a request is taking a lease for this bucket: concurrent ones take one token


@dataclass(slots=True)
class Buckets:
    """The buckets one request takes from: those it must take from in Redis (`keys`, with each one's
    rate, burst and wanted lease in `args`), and those it already took a token from in this worker."""

    keys: list[object]
    args: list[object]
    spent: list[Lease] = field(default_factory=list)
    taking: dict[str, Lease] = field(default_factory=dict)     # the buckets it takes a lease of

    def settle(self, wait_ms: int, taken: list[object]) -> None:
        """After Redis answered (taken empty when it could not): give the request's local tokens back if
        it was refused, else keep what Redis gave beyond the request's own token as leases."""
        if wait_ms:
            for spent in self.spent:
                spent.tokens += 1
        expires = time.monotonic() + LEASE_S
        for name, got in zip(self.keys, taken or [0] * len(self.keys), strict=True):
            lease = self.taking.get(str(name))
            if lease is None:
                continue
            lease.pending = False
            if not wait_ms and isinstance(got, int) and got > 1:
                lease.tokens, lease.expires = got - 1, expires
        self.taking.clear()

    def release(self) -> None:
        """The request ended without Redis answering its take (refused before the lock, or an error): the
        leases it was taking are free again for the next request."""
        for lease in self.taking.values():
            lease.pending = False
        self.taking.clear()


class RateLimiter:
    def __init__(self, commands: RedisPipeliner, limits: Limits, key: bytes = b"") -> None:
        self.commands = commands
        self.limits = limits
        # Addresses are hashed under the switch's key: no client address is a Redis key in clear.
        self.key = hashlib.sha256(b"rate limit addresses\0" + key).digest()[:32]
        self.script_sha = commands.register_script(BUCKET_SCRIPT)
        self.leases: dict[str, Lease] = {}

    def buckets(self, key_digest: bytes | None, address: str, key_per_s: int | None = None,
                key_burst: int | None = None) -> Buckets:
        """The address's bucket, and the API key's when the key is known (with the merchant's own limit).
        A bucket this worker holds a lease of gives its token here; the others go to Redis."""
        limits = self.limits
        buckets = Buckets([], [])
        self._take(buckets, self.address_bucket(address), limits.address_per_s, limits.address_burst)
        if key_digest is not None:
            self._take(buckets, f"rl:k:{key_digest[:12].hex()}", key_per_s or limits.key_per_s,
                       key_burst or limits.key_burst)
        return buckets

    def address_bucket(self, address: str) -> str:
        return "rl:a:" + hashlib.blake2b(address.encode(), key=self.key, digest_size=12).hexdigest()

    def _take(self, buckets: Buckets, name: str, per_s: int, burst: int) -> None:
        lease = self.leases.get(name)
        if lease is not None and lease.tokens > 0 and lease.expires > time.monotonic():
            lease.tokens -= 1
            buckets.spent.append(lease)
            return
        wanted = max(1, min(per_s // 20, burst // 10, LEASE_MAX))
        if wanted > 1:
            if lease is None:
                if len(self.leases) >= LEASES_MAX:
                    self._drop_expired()
                lease = self.leases[name] = Lease()
            if lease.pending:
                wanted = 1                             # another request of this pass is taking the lease
            else:
                lease.pending = True
                buckets.taking[name] = lease
        buckets.keys.append(name)
        buckets.args += [per_s, burst, wanted]

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for name in [name for name, lease in self.leases.items() if lease.expires <= now and not lease.pending]:
            del self.leases[name]
        if len(self.leases) >= LEASES_MAX:
            self.leases.clear()                        # many live clients: fall back to Redis for a second

    def admit(self, buckets: Buckets) -> Admission:
        """Queue a take on the next pipeline when a bucket has no lease here (a read's: a mutating
        request's take rides its idempotency lock, switch.idempotency.lock); `Admission.wait_ms` answers."""
        future = asyncio.get_running_loop().create_future()
        if not buckets.keys:
            future.set_result([0])
            return Admission(future, buckets)
        try:
            future = self.commands.enqueue("EVALSHA", self.script_sha, len(buckets.keys), *buckets.keys,
                                           *buckets.args)
        except RedisError:
            future.set_result([0])                      # too much queued for Redis: the lock will say so
        return Admission(future, buckets)


@dataclass(slots=True)
class Admission:
    """One request's pending take from its buckets."""

    future: asyncio.Future[object]
    buckets: Buckets

    async def wait_ms(self) -> int:
        """0 when the request may go on, else how long until it may; 0 too when Redis cannot say."""
        try:
            result = await self.future
        except (RedisError, OSError):
            result = None
        if not isinstance(result, list) or not result or not isinstance(result[0], int):
            self.buckets.settle(0, [])
            return 0
        self.buckets.settle(result[0], result[1:])
        return result[0]
