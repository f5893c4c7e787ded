"""The idempotency lock: Redis ``SET NX`` on (merchant, key) in front, the Postgres row behind it.

The Redis value says whether the request is in flight (``L`` + fingerprint + when taken) or done (``D`` +
fingerprint + the canonical outcome, kept 24 h as the replay cache). Postgres holds the record of truth:
the unique (merchant_id, idempotency_key) row written before any network I/O, with the outcome once the
request is finished. Redis unreachable -> fail closed: no request is processed without the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from enum import StrEnum

import asyncpg
import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from switch.idempotency.pipeline import RedisPipeliner
from switch.idempotency.ratelimit import LOCK_SCRIPT, Buckets
from switch.idempotency.resp import Packed
from switch.store import idempotency as key_store

FINGERPRINT_BYTES = 32


class Refusal(StrEnum):
    UNAVAILABLE = "unavailable"    # Redis cannot be reached: nothing was processed
    IN_USE = "in_use"              # the same request is still in flight
    REUSED = "reused"              # the key was used with other parameters


class Rider(msgspec.Struct, frozen=True):
    """Lua that rides the lock's command and runs only when the lock is taken (ratelimit.lock_script_with):
    its script's SHA, and the keys (packed once: they are the same for many requests) and arguments that
    follow the lock's and the buckets'. It and Lock are Structs, made per request: a Struct's __init__ is
    C, where a NamedTuple's __new__ is Python (Lock(rider_answer=...) 0.34 -> 0.07 µs)."""

    sha: str
    keys: Packed
    args: Sequence[object]


class Lock(msgspec.Struct, frozen=True):
    """What taking the lock gave: the lock itself, a finished request's outcome, or a refusal."""

    replay: bytes | None = None
    refusal: Refusal | None = None
    wait_ms: int = 0                 # over its rate limit: the lock was not even tried
    rider_answer: object = None      # the rider's answer, when the lock was taken with one

    @property
    def taken(self) -> bool:
        return self.replay is None and self.refusal is None and not self.wait_ms


TAKEN = Lock()
UNAVAILABLE = Lock(refusal=Refusal.UNAVAILABLE)
IN_USE = Lock(refusal=Refusal.IN_USE)
REUSED = Lock(refusal=Refusal.REUSED)


class Idempotency:
    def __init__(self, client: redis.Redis, pool: asyncpg.Pool, hmac_key: bytes, lock_ttl_s: int,
                 retention_s: int, lock_stale_after_s: float = 5.0) -> None:
        self.commands = RedisPipeliner(client)
        self.lock_script_sha = self.commands.register_script(LOCK_SCRIPT)
        self.pool = pool
        self.hmac_key = hmac_key
        self.lock_ttl_s = lock_ttl_s
        self.retention_s = retention_s
        # A lock older than this belongs to a request that should have finished (or been recovered): ask
        # Postgres instead of answering 409 until the lock expires.
        self.lock_stale_after_ms = int(lock_stale_after_s * 1000)

    def fingerprint(self, method: str, path: str, body: bytes) -> bytes:
        """Keyed hash of the request: bodies may hold card numbers, so an unkeyed hash would leak them."""
        return hmac.new(self.hmac_key, b"%s %s\n%s" % (method.encode(), path.encode(), body), hashlib.sha256).digest()

    def redis_key(self, merchant_id: str, key: str) -> str:
        # Keys are merchant-chosen text; hash them so nothing a merchant typed is stored in Redis.
        digest = hmac.new(self.hmac_key, key.encode(), hashlib.sha256).hexdigest()[:32]
        return f"idem:{merchant_id}:{digest}"

    async def acquire(self, merchant_id: str, key: str, fingerprint: bytes, name: str,
                      rate: Buckets | None = None, rider: Rider | None = None) -> Lock:
        """Take the lock `name` (``redis_key(merchant_id, key)``), or answer the outcome of the finished
        request, or refuse. With `rate`, the request's rate-limit take is the same command; so is `rider`."""
        lock = b"L" + fingerprint + int(time.time() * 1000).to_bytes(8, "big")
        if rider is not None:
            return await self._acquire_with(merchant_id, key, fingerprint, name, lock, rate, rider)
        try:
            if rate is None or not rate.keys:
                # SET NX GET (Redis >= 7): sets and answers nil, or leaves the key and answers its value.
                previous = await self.commands.execute("SET", name, lock, "NX", "GET", "EX", self.lock_ttl_s)
            else:
                answer = await self.commands.execute("EVALSHA", self.lock_script_sha, 1 + len(rate.keys), name,
                                                     *rate.keys, lock, self.lock_ttl_s, *rate.args)
                if not isinstance(answer, list) or not isinstance(answer[0], int):
                    rate.settle(0, [])
                    return UNAVAILABLE
                rate.settle(answer[0], answer[2:])
                if answer[0]:
                    return Lock(wait_ms=answer[0])
                previous = answer[1]
        except (RedisError, OSError):
            if rate is not None:
                rate.settle(0, [])
            return UNAVAILABLE
        if previous is None:
            return TAKEN
        if not isinstance(previous, bytes):         # an error reply of the pipeline
            return UNAVAILABLE
        if previous[:1] == b"L" and previous[1:1 + FINGERPRINT_BYTES] == fingerprint and self._stale(previous):
            return await self.replay_from_database(merchant_id, key, fingerprint, name)
        return self._decode(previous, fingerprint)

    async def _acquire_with(self, merchant_id: str, key: str, fingerprint: bytes, name: str, lock: bytes,
                            rate: Buckets | None, rider: Rider) -> Lock:
        bucket_keys: list[object] = rate.keys if rate is not None else []
        bucket_args: list[object] = rate.args if rate is not None else []
        try:
            answer = await self.commands.execute("EVALSHA", rider.sha, 1 + len(bucket_keys) + rider.keys.size, name,
                                                 *bucket_keys, rider.keys, lock, self.lock_ttl_s,
                                                 len(bucket_keys), *bucket_args, *rider.args)
        except (RedisError, OSError):
            answer = None
        if not isinstance(answer, list) or not isinstance(answer[0], int) or not isinstance(answer[2], list):
            if rate is not None:
                rate.settle(0, [])
            return UNAVAILABLE
        if rate is not None and bucket_keys:      # with no bucket in Redis there is nothing to settle
            taken = answer[2]
            rate.settle(taken[0], taken[1:])
        if answer[0]:
            return Lock(wait_ms=answer[0])
        previous = answer[1]
        if previous is None:
            return Lock(rider_answer=answer[3] if len(answer) > 3 else None)
        if not isinstance(previous, bytes):
            return UNAVAILABLE
        if previous[:1] == b"L" and previous[1:1 + FINGERPRINT_BYTES] == fingerprint and self._stale(previous):
            return await self.replay_from_database(merchant_id, key, fingerprint, name)
        return self._decode(previous, fingerprint)

    def _stale(self, lock: bytes) -> bool:
        taken_ms = int.from_bytes(lock[1 + FINGERPRINT_BYTES:], "big")
        return int(time.time() * 1000) - taken_ms > self.lock_stale_after_ms

    @staticmethod
    def _decode(value: bytes, fingerprint: bytes) -> Lock:
        if value[1:1 + FINGERPRINT_BYTES] != fingerprint:
            return REUSED
        if value[:1] == b"L":
            return IN_USE
        return Lock(replay=value[1 + FINGERPRINT_BYTES:])

    async def replay_from_database(self, merchant_id: str, key: str, fingerprint: bytes, name: str) -> Lock:
        """Postgres is the last guard when Redis lost a key: replay, or refuse if still in flight."""
        record = await key_store.get_key(self.pool, merchant_id, key)
        if record is None:
            return IN_USE
        if record.fingerprint != fingerprint:
            return REUSED
        if record.outcome is None:
            return IN_USE
        await self.remember(name, fingerprint, record.outcome)
        return Lock(replay=record.outcome)

    async def remember(self, name: str, fingerprint: bytes, outcome: bytes) -> None:
        """Cache the finished request's outcome for replays. Best effort: Postgres already holds it."""
        try:
            await self.commands.execute("SET", name, b"D" + fingerprint + outcome, "EX", self.retention_s)
        except (RedisError, OSError):
            pass

    async def release(self, name: str) -> None:
        """Drop the lock of a request that failed before writing anything, so it can be retried."""
        try:
            await self.commands.execute("DEL", name)
        except (RedisError, OSError):
            pass
