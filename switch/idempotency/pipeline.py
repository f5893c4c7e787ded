"""Redis commands of one event-loop pass, sent as one pipeline (one round trip)."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import redis.asyncio as redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from switch.common.batch import Batcher, BatchQueueFull
from switch.common.outage import Outage
from switch.idempotency.resp import Command, RespLink, connect, pack

# The longest a pipeline (a loop pass's commands) may take to go out and come back. On expiry the
# connection is dropped (no half-read replies are left on it) and the requests answer 503.
REDIS_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


class RedisPipeliner:
    """Commands issued by concurrent requests in one loop pass go out as one pipeline (one round trip),
    on a connection of its own (switch.idempotency.resp); `client` (redis-py) loads the scripts."""

    def __init__(self, client: redis.Redis, size_max: int = 512, inflight_max: int = 2,
                 timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self.client = client
        self.options = dict(client.connection_pool.connection_kwargs)
        self.tls = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
        self.timeout_s = timeout_s
        self.outage = Outage("redis")
        self.scripts: dict[str, str] = {}
        self.link: RespLink | None = None
        self.connecting: asyncio.Future[RespLink] | None = None
        self.batches: Batcher[Command, object] = Batcher(self._run, size_max=size_max, inflight_max=inflight_max)

    def log_batches(self) -> None:
        log.info("redis: %d commands in %d pipelines", self.batches.items, self.batches.batches)

    def enqueue(self, *command: object) -> asyncio.Future[object]:
        """Queue a command on the next pipeline and return its future (an error reply is its result)."""
        try:
            return self.batches.enqueue(command)
        except BatchQueueFull:
            raise RedisError("too many Redis commands waiting") from None

    async def execute(self, *command: object) -> object:
        try:
            result = await self.batches.submit(command)
        except BatchQueueFull:
            raise RedisError("too many Redis commands waiting") from None
        return result

    def register_script(self, script: str) -> str:
        """A Lua script the commands call by its SHA1 (EVALSHA); loaded again if Redis forgets it."""
        sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
        self.scripts[sha] = script
        return sha

    async def load_scripts(self) -> None:
        for script in self.scripts.values():
            await self.client.script_load(script)

    async def close(self) -> None:
        if self.link is not None:
            self.link.close()

    async def _run(self, commands: list[Command]) -> list[object]:
        results = await self._send(commands)
        forgotten = [index for index, result in enumerate(results) if _forgotten_script(result)]
        if forgotten:
            # Redis restarted and forgot our scripts: load them and send those commands once more.
            await self.load_scripts()
            again = await self._send([commands[index] for index in forgotten])
            for index, result in zip(forgotten, again, strict=True):
                results[index] = result
        return [NoScriptError(str(result)) if _forgotten_script(result) else result for result in results]

    async def _send(self, commands: list[Command]) -> list[object]:
        try:
            packed = b"".join(pack(command) for command in commands)
            async with asyncio.timeout(self.timeout_s):
                link = self.link if self.link is not None and not self.link.closed else await self._connect()
                sent = link.send(packed, len(commands))
                try:
                    results = list(await sent)
                except TimeoutError:
                    link.close()                  # no half-read replies may stay on the connection
                    raise
        except TimeoutError:
            error = RedisError(f"no answer from Redis in {self.timeout_s} s")
            self.outage.failed(error, len(commands))
            raise error from None
        except (RedisError, OSError) as error:
            self.outage.failed(error, len(commands))
            raise
        self.outage.succeeded()
        return results

    async def _connect(self) -> RespLink:
        """One connection attempt shared by the pipelines that find the link down."""
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(connect(self.options, self.tls))
            self.connecting.add_done_callback(self._connected)
        return await asyncio.shield(self.connecting)

    def _connected(self, attempt: asyncio.Future[RespLink]) -> None:
        self.connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self.link = attempt.result()


def _forgotten_script(result: object) -> bool:
    return isinstance(result, ResponseError) and str(result).startswith("NOSCRIPT")
