"""The bench's lean webhook receiver: it answers each request once whole, pipelined or split across
reads, and closes a connection whose request it cannot frame."""

from __future__ import annotations

import asyncio

from loadtest import receiver


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def _request(body: bytes) -> bytes:
    return b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_pipelined_and_split_requests_are_each_answered_once() -> None:
    counted = [0]
    protocol, transport = receiver.Counting(counted), Transport()
    protocol.connection_made(transport)
    stream = _request(b'{"a":1}') + _request(b"x" * 5000) + _request(b"{}")
    for start in range(0, len(stream), 700):                  # arrives in pieces
        protocol.data_received(stream[start:start + 700])
    assert counted == [3] and transport.written == [receiver.ANSWER] * 3 and not transport.closed


def test_a_request_without_a_length_closes_the_connection() -> None:
    counted = [0]
    protocol, transport = receiver.Counting(counted), Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"POST /hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert counted == [0] and transport.closed
