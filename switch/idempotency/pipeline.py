"""Redis commands of one event-loop pass, sent as one pipeline (one round trip)."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import redis.asyncio as redis
from redis.exceptions import NoScriptError, RedisError

from switch.common.batch import Batcher, BatchQueueFull
from switch.common.outage import Outage

# The longest a pipeline (a loop pass's commands) may take to go out and come back. On expiry redis-py
# drops the connection (no half-read replies are left on it) and the requests answer 503.
REDIS_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


class RedisPipeliner:
    """Commands issued by concurrent requests in one loop pass go out as one pipeline (one round trip)."""

    def __init__(self, client: redis.Redis, size_max: int = 512, inflight_max: int = 2,
                 timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.outage = Outage("redis")
        self.scripts: dict[str, str] = {}
        self.batches: Batcher[tuple[tuple[object, ...], dict[str, object]], object] = Batcher(
            self._run, size_max=size_max, inflight_max=inflight_max)

    def log_batches(self) -> None:
        log.info("redis: %d commands in %d pipelines", self.batches.items, self.batches.batches)

    def enqueue(self, *command: object) -> asyncio.Future[object]:
        """Queue a command on the next pipeline and return its future (an error reply is its result)."""
        try:
            return self.batches.enqueue((command, {}))
        except BatchQueueFull:
            raise RedisError("too many Redis commands waiting") from None

    async def execute(self, *command: object, **options: object) -> object:
        """`options` reach redis-py's response callback (e.g. get=True keeps SET ... GET's value)."""
        try:
            result = await self.batches.submit((command, options))
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

    async def _run(self, commands: list[tuple[tuple[object, ...], dict[str, object]]]) -> list[object]:
        results = await self._send(commands)
        forgotten = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
        if forgotten:
            # Redis restarted and forgot our scripts: load them and send those commands once more.
            await self.load_scripts()
            again = await self._send([commands[index] for index in forgotten])
            for index, result in zip(forgotten, again, strict=True):
                results[index] = result
        return results

    async def _send(self, commands: list[tuple[tuple[object, ...], dict[str, object]]]) -> list[object]:
        pipe = self.client.pipeline(transaction=False)
        for command, options in commands:
            pipe.execute_command(*command, **options)
        try:
            async with asyncio.timeout(self.timeout_s):
                results = list(await pipe.execute(raise_on_error=False))
        except TimeoutError:
            error = RedisError(f"no answer from Redis in {self.timeout_s} s")
            self.outage.failed(error, len(commands))
            raise error from None
        except (RedisError, OSError) as error:
            self.outage.failed(error, len(commands))
            raise
        self.outage.succeeded()
        return results
