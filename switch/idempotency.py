"""Idempotency with Stripe's semantics: a Redis lock in front, the Postgres row behind it.

Redis ``SET NX`` on (merchant, key) is the fast lock; its value says whether the request is in flight
(``L`` + fingerprint) or done (``D`` + fingerprint + status + body, kept 24 h as the replay cache).
Postgres holds the record of truth: the unique (merchant_id, idempotency_key) row written before any
network I/O. Redis unreachable -> fail closed (503): no request is processed without the lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError

from switch import store
from switch.common import errors
from switch.common.batch import Batcher, BatchQueueFull

FINGERPRINT_BYTES = 32
# The longest a pipeline (a loop pass's commands) may take to go out and come back. On expiry redis-py
# drops the connection (no half-read replies are left on it) and the requests answer 503.
REDIS_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes


def _unavailable() -> errors.ApiError:
    return errors.service_unavailable("idempotency_unavailable",
                                      "The idempotency store is unavailable; the request was not processed. "
                                      "Retry with the same Idempotency-Key.")


class RedisPipeliner:
    """Commands issued by concurrent requests in one loop pass go out as one pipeline (one round trip)."""

    def __init__(self, client: redis.Redis, size_max: int = 512, inflight_max: int = 2,
                 timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.batches: Batcher[tuple[tuple[object, ...], dict[str, object]], object] = Batcher(
            self._run, size_max=size_max, inflight_max=inflight_max)

    async def execute(self, *command: object, **options: object) -> object:
        """`options` reach redis-py's response callback (e.g. get=True keeps SET ... GET's value)."""
        try:
            result = await self.batches.submit((command, options))
        except BatchQueueFull:
            raise RedisError("too many Redis commands waiting") from None
        return result

    async def _run(self, commands: list[tuple[tuple[object, ...], dict[str, object]]]) -> list[object]:
        pipe = self.client.pipeline(transaction=False)
        for command, options in commands:
            pipe.execute_command(*command, **options)
        try:
            async with asyncio.timeout(self.timeout_s):
                return list(await pipe.execute(raise_on_error=False))
        except TimeoutError:
            raise RedisError(f"no answer from Redis in {self.timeout_s} s") from None


class Idempotency:
    def __init__(self, client: redis.Redis, pool: asyncpg.Pool, hmac_key: bytes, lock_ttl_s: int,
                 retention_s: int, lock_stale_after_s: float = 5.0) -> None:
        self.commands = RedisPipeliner(client)
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

    async def acquire(self, merchant_id: str, key: str, fingerprint: bytes) -> Replay | None:
        """Take the lock (None), or return the stored response of a finished request (Replay).

        Raises 409 while the same request is in flight, 400 for the same key with another request, and
        503 when Redis cannot be reached.
        """
        name = self.redis_key(merchant_id, key)
        # SET NX GET (Redis >= 7): sets and answers nil, or leaves the key and answers its value.
        lock = b"L" + fingerprint + int(time.time() * 1000).to_bytes(8, "big")
        previous = await self._call("SET", name, lock, "NX", "GET", "EX", self.lock_ttl_s, get=True)
        if previous is None:
            return None
        assert isinstance(previous, bytes)
        if previous[:1] == b"L" and previous[1:1 + FINGERPRINT_BYTES] == fingerprint and self._stale(previous):
            return await self.from_database(merchant_id, key, fingerprint)
        return self._decode(previous, fingerprint)

    def _stale(self, lock: bytes) -> bool:
        taken_ms = int.from_bytes(lock[1 + FINGERPRINT_BYTES:], "big")
        return int(time.time() * 1000) - taken_ms > self.lock_stale_after_ms

    async def _call(self, *command: object, **options: object) -> object:
        try:
            result = await self.commands.execute(*command, **options)
        except (RedisError, OSError):
            raise _unavailable() from None
        if isinstance(result, Exception):
            raise _unavailable()
        return result

    @staticmethod
    def _decode(value: bytes, fingerprint: bytes) -> Replay:
        if value[1:1 + FINGERPRINT_BYTES] != fingerprint:
            raise errors.idempotency_mismatch()
        if value[:1] == b"L":
            raise errors.idempotency_conflict()
        offset = 1 + FINGERPRINT_BYTES
        return Replay(int(value[offset:offset + 3]), value[offset + 3:])

    async def from_database(self, merchant_id: str, key: str, fingerprint: bytes) -> Replay:
        """Postgres is the last guard when Redis lost a key: replay, or refuse if still in flight."""
        row = await store.load_key(self.pool, merchant_id, key)
        if row is None:
            raise errors.idempotency_conflict()
        if row.fingerprint != fingerprint:
            raise errors.idempotency_mismatch()
        if row.response_status is None or row.response_body is None:
            raise errors.idempotency_conflict()
        await self.remember(merchant_id, key, fingerprint, row.response_status, row.response_body)
        return Replay(row.response_status, row.response_body)

    async def remember(self, merchant_id: str, key: str, fingerprint: bytes, status: int, body: bytes) -> None:
        """Cache the finished response for replays. Best effort: Postgres already holds it."""
        try:
            await self.commands.execute("SET", self.redis_key(merchant_id, key),
                                        b"D" + fingerprint + b"%03d" % status + body, "EX", self.retention_s)
        except (RedisError, OSError):
            pass

    async def release(self, merchant_id: str, key: str) -> None:
        """Drop the lock of a request that failed before writing anything, so it can be retried."""
        try:
            await self.commands.execute("DEL", self.redis_key(merchant_id, key))
        except (RedisError, OSError):
            pass
