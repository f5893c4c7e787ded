"""The webhooks' keep-alive connections, against a small HTTP server on loopback that counts the connections
it accepts; and how deep a worker claims for an endpoint, from its recent answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from switch.frontends.webhooks import client, cursors
from switch.frontends.webhooks.delivery import PER_ENDPOINT_MAX, QUEUED_FAST_MAX, Deliverer


class Receiver:
    """Answers every POST with 200; `closing` adds Connection: close; `accepted` counts connections."""

    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                extra = b"Connection: close\r\n" if self.closing else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\n{}")
                await writer.drain()
                if self.closing:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


async def post(url: str, connections: client.Connections) -> client.Answer:
    return await client.post(url, b'{"id":"evt_1"}', [], allow_loopback=True, timeout_s=5.0, connections=connections)


async def test_attempts_to_one_endpoint_share_a_kept_alive_connection() -> None:
    receiver, connections = Receiver(), client.Connections()
    async with serving(receiver) as url:
        answers = [await post(url, connections) for _ in range(5)]
    connections.close()
    assert [answer.status for answer in answers] == [200] * 5
    assert receiver.accepted == 1


async def test_a_server_that_closes_gets_a_new_connection_each_time() -> None:
    receiver, connections = Receiver(closing=True), client.Connections()
    async with serving(receiver) as url:
        answers = [await post(url, connections) for _ in range(3)]
    assert [answer.status for answer in answers] == [200] * 3
    assert receiver.accepted == 3 and connections.count == 0


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failed_attempt() -> None:
    receiver, connections = Receiver(), client.Connections()
    async with serving(receiver) as url:
        assert (await post(url, connections)).status == 200
        for writer in receiver.writers:
            writer.close()                  # the server drops its idle connection
        await asyncio.sleep(0.05)
        second = await post(url, connections)
    connections.close()
    assert (second.status, second.error) == (200, None)
    assert receiver.accepted == 2


async def test_an_endpoint_that_stops_answering_on_a_kept_connection_times_out_and_loses_it() -> None:
    # The first answer keeps the connection; the second never comes: the attempt ends at its deadline
    # (a timer on the answer, not a retry on a new connection) and the connection is not kept.
    answered = accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered, accepted
        accepted += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            if answered:
                await asyncio.sleep(5)
            answered += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    connections = client.Connections()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        first = await post(url, connections)
        second = await client.post(url, b"{}", [], allow_loopback=True, timeout_s=0.2, connections=connections)
    finally:
        server.close()
    assert (first.status, second.status, second.error) == (200, None, "no answer within 0 s")
    assert 150 <= second.latency_ms < 1000 and connections.count == 0 and accepted == 1


def test_a_fast_endpoint_is_claimed_for_in_depth_and_a_failing_one_is_not() -> None:
    deliverer = Deliverer(pool=None)  # type: ignore[arg-type]  # only its bookkeeping is used here
    assert deliverer._claim_max("we_new") == PER_ENDPOINT_MAX              # not seen yet
    for _ in range(3):
        deliverer._observe("we_fast", client.Answer(200, None, 3, "{}"))
        deliverer._observe("we_down", client.Answer(500, None, 3, "{}"))
    assert deliverer._claim_max("we_fast") == QUEUED_FAST_MAX
    assert deliverer._claim_max("we_down") == PER_ENDPOINT_MAX
    deliverer._observe("we_fast", client.Answer(None, "connection failed", 1, None))
    assert deliverer._claim_max("we_fast") == PER_ENDPOINT_MAX             # one failure: no longer fast


def test_a_held_cursors_endpoint_stays_fast_between_batches() -> None:
    """Its attempts all answered and its next batch not read yet, an endpoint whose cursor this worker
    holds keeps its measured latency, so the next batch is read in depth (forgetting it read batches of
    16 and drained a backlog at a fifth of the rate)."""
    deliverer = Deliverer(pool=None)  # type: ignore[arg-type]  # only its bookkeeping is used here
    endpoint = {"endpoint_id": "we_fast", "cursor_xid": 1, "cursor_event_id": 0}
    deliverer.cursors["we_fast"] = cursors.CursorState(endpoint)  # type: ignore[arg-type]
    job = cursors.Job(endpoint, {"id": 1}, 0, datetime.now(UTC))
    deliverer.per_endpoint["we_fast"], deliverer.sending, job.sending = 1, 1, True
    deliverer._observe("we_fast", client.Answer(200, None, 3, "{}"))
    deliverer._answered(job)
    assert deliverer.sending == 0 and "we_fast" not in deliverer.per_endpoint
    assert deliverer._claim_max("we_fast") == QUEUED_FAST_MAX


async def test_an_answer_without_a_length_is_read_until_the_server_closes_and_not_kept() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n" + b"e" * 10_000)   # read up to 4 KiB
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    connections = client.Connections()
    try:
        answer = await post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", connections)
    finally:
        server.close()
    assert (answer.status, answer.error) == (500, None)
    assert answer.excerpt == "e" * client.EXCERPT_MAX and connections.count == 0


async def test_a_head_that_never_ends_is_a_failed_attempt() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (client.ANSWER_HEAD_MAX + 10))
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        answer = await post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", client.Connections())
    finally:
        server.close()
    assert answer.status is None and answer.error == "connection failed: ValueError"
