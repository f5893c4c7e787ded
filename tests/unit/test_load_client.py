"""The load generator's HTTP client: a request that gets no answer in time fails, and its connection is not
used again; an answer in time is not failed by its timer later."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.httpclient import Client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def serve(answering: bool) -> tuple[asyncio.Server, list[int]]:
    """A server on loopback that answers every request, or none; and how many connections it took."""
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        while await reader.readuntil(b"\r\n\r\n"):
            if answering:
                writer.write(ANSWER)
        writer.close()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(guarded, "127.0.0.1", 0), connections


async def test_a_request_without_an_answer_times_out_and_its_connection_goes() -> None:
    server, connections = await serve(answering=False)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}")
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await client.request("GET", "/", timeout_s=0.05)
        assert client.idle == []
        assert connections[0] == 2
    finally:
        await client.close()
        server.close()


async def test_an_answer_in_time_is_not_failed_by_its_timer_later() -> None:
    server, connections = await serve(answering=True)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}")
    try:
        first = await client.request("GET", "/", timeout_s=0.05)
        await asyncio.sleep(0.1)             # past the first request's timeout
        second = await client.request("GET", "/", timeout_s=5.0)
        assert (first.status, second.status, connections[0]) == (200, 200, 1)
    finally:
        await client.close()
        server.close()
