"""A lean Redis connection for the hot path's pipelines: commands packed by hand into one write, replies
parsed by hiredis and handed back in order. redis-py's pipeline spent ~10 µs of the switch's CPU packing
one EVALSHA and more on its retry and connection layers; this is the part of it the pipeliner needs.

Several pipelines may be in flight on the one connection (Redis answers in order). A lost connection
fails every pipeline waiting on it; the next pipeline connects again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

Command = tuple[object, ...]


def pack(command: Command) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    append = parts.append
    for arg in command:
        kind = type(arg)
        if kind is str:
            data = cast(str, arg).encode()
        elif kind is bytes:
            data = cast(bytes, arg)
        elif kind is int:
            data = b"%d" % cast(int, arg)
        elif kind is float:
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument cannot be a {kind.__name__}")
        append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespLink(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(protocolError=RedisConnectionError, replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while pending:
            try:
                reply = self.reader.gets()
            except RedisConnectionError as error:      # not RESP: nothing more on this connection is safe
                self._fail(error)
                self.close()
                return
            if reply is False:
                return
            count, replies, future = pending[0]
            replies.append(reply)
            if len(replies) == count:
                pending.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionError("connection to Redis lost"))

    def _fail(self, error: Exception) -> None:
        while self.pending:
            _, _, future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write `count` packed commands; the future answers their replies (error replies as exceptions
        in the list, as redis-py's raise_on_error=False does)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("connection to Redis lost"))
            return future
        self.pending.append((count, [], future))
        self.transport.write(packed)
        return future

    def close(self) -> None:
        """Drop the connection at once: replies still due would be read by nobody."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


async def connect(options: dict[str, Any]) -> RespLink:
    """A link to the Redis that redis-py's `connection_kwargs` describe (TCP or Unix socket, AUTH, SELECT)."""
    loop = asyncio.get_running_loop()
    try:
        if options.get("path"):
            _, link = await loop.create_unix_connection(RespLink, options["path"])
        else:
            _, link = await loop.create_connection(RespLink, options.get("host", "127.0.0.1"),
                                                   options.get("port", 6379))
    except OSError as error:
        raise RedisConnectionError(f"cannot connect to Redis: {error.__class__.__name__}") from None
    setup: list[Command] = []
    if options.get("password"):
        setup.append(("AUTH", *([options["username"]] if options.get("username") else []), options["password"]))
    if options.get("db"):
        setup.append(("SELECT", int(options["db"])))
    if setup:
        replies = await link.send(b"".join(pack(command) for command in setup), len(setup))
        failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if failed is not None:
            link.close()
            raise RedisConnectionError(f"Redis refused the connection's setup: {failed}")
    return link
