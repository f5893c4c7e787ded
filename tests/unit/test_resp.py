"""The hot path's Redis link: RESP packing byte for byte, replies handed back in order across pipelines
and split reads, error replies as exceptions in the list, and a lost connection failing what waits."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from switch.idempotency.resp import RespLink, pack


def test_pack_is_resp_arrays_of_bulk_strings() -> None:
    assert pack(("SET", b"k\r\n", 12, "v")) == b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$1\r\nv\r\n"
    with pytest.raises(TypeError):
        pack(("SET", None))


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


async def test_replies_come_back_in_order_to_each_pipeline() -> None:
    link = RespLink()
    link.connection_made(Transport())  # type: ignore[arg-type]
    first = link.send(pack(("GET", "a")) + pack(("DEL", "b")), 2)
    second = link.send(pack(("EVALSHA", "x", 0)), 1)
    link.data_received(b"$1\r\nA\r\n:")                 # a reply split across reads
    assert not first.done()
    link.data_received(b"1\r\n-NOSCRIPT No matching script\r\n")
    replies = await first
    assert replies == [b"A", 1]
    [error] = await second
    assert isinstance(error, ResponseError) and str(error).startswith("NOSCRIPT")


async def test_a_lost_connection_fails_what_waits_and_what_comes_after() -> None:
    link = RespLink()
    link.connection_made(Transport())  # type: ignore[arg-type]
    waiting = link.send(pack(("GET", "a")), 1)
    link.connection_lost(None)
    with pytest.raises(RedisConnectionError):
        await waiting
    with pytest.raises(RedisConnectionError):
        await link.send(pack(("GET", "a")), 1)
    assert asyncio.isfuture(waiting)


def test_a_rediss_url_gets_tls_and_its_certificate_settings() -> None:
    import ssl

    import redis.asyncio as redis

    from switch.idempotency.pipeline import RedisPipeliner
    from switch.idempotency.resp import tls_context

    secure = RedisPipeliner(redis.Redis.from_url("rediss://user:secret@127.0.0.1:6380/2"))
    assert secure.tls and tls_context(secure.options).verify_mode is ssl.CERT_REQUIRED
    lax = RedisPipeliner(redis.Redis.from_url("rediss://127.0.0.1:6380/0?ssl_cert_reqs=none"))
    assert tls_context(lax.options).verify_mode is ssl.CERT_NONE
    assert not RedisPipeliner(redis.Redis.from_url("redis://127.0.0.1:6379/0")).tls
