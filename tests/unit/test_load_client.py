"""The load generator's HTTP client: a request that gets no answer in time fails and its connection is
closed; an answer in time cancels its timer."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.httpclient import Client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def serve(answering: bool) -> tuple[asyncio.Server, list[int]]:
    """A server on loopback that answers every request, or none; how many connections it took, and how many
    it saw closed by the client."""
    connections = [0, 0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if answering:
                    writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            connections[1] += 1
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), connections


async def test_a_request_without_an_answer_times_out_and_its_connection_goes() -> None:
    server, connections = await serve(answering=False)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TimeoutError):
            await client.request("GET", "/", timeout_s=0.05)
        await asyncio.sleep(0.05)
        assert client.idle == [] and connections == [1, 1]       # the server read the end of it
        with pytest.raises(TimeoutError):
            await client.request("GET", "/", timeout_s=0.05)
        assert connections[0] == 2
    finally:
        await client.close()
        server.close()


async def test_an_answer_in_time_cancels_its_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    server, connections = await serve(answering=True)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def call_later(delay: float, callback, *args):  # type: ignore[no-untyped-def]
        timers.append(loop.call_at(loop.time() + delay, callback, *args))
        return timers[-1]

    monkeypatch.setattr(loop, "call_later", call_later)
    try:
        answered = await client.request("GET", "/", timeout_s=30.0)
    finally:
        monkeypatch.undo()
        await client.close()
        server.close()
    assert answered.status == 200 and len(timers) == 1 and timers[0].cancelled()
