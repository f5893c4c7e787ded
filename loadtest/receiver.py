"""The bench's webhook receiver: answers 200 to every request on a kept-alive connection and counts them,
doing no more than a merchant's endpoint must (read the head, skip the body), so its share of the machine
(counted in `loadgen`) stays small beside the switch it measures."""

from __future__ import annotations

import asyncio
from typing import cast

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
HEAD_MAX = 16_384


class Counting(asyncio.Protocol):
    """One connection: requests one after another (pipelined ones too), each answered once whole."""

    def __init__(self, received: list[int]) -> None:
        self.received = received
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)    # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _content_length(self.buffer[:end])
            if length is None:
                self.transport.close()         # no Content-Length: not a request this receiver takes
                return
            if len(self.buffer) < end + 4 + length:
                return                         # the rest of the body is on its way
            self.buffer = self.buffer[end + 4 + length:]
            self.received[0] += 1
            self.transport.write(ANSWER)
        if len(self.buffer) > HEAD_MAX:
            self.transport.close()             # a head that never ends


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


async def serve(host: str, port: int, received: list[int]) -> asyncio.Server:
    return await asyncio.get_running_loop().create_server(lambda: Counting(received), host, port)
