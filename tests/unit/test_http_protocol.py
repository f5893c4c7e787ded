"""The HTTP protocol on raw bytes with a fake transport: no sockets."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from switch.common import drain, http
from switch.common.http import HttpProtocol, Request, Response


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True
        self.eof_written = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def echo(request: Request) -> Response:
    return Response(200, msgspec.json.encode({"path": request.path, "query": request.query,
                                              "body": request.body.decode(), "key": request.header("idempotency-key")}))


async def feed(*chunks: bytes) -> tuple[FakeTransport, list[bytes]]:
    protocol = HttpProtocol(echo)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        protocol.data_received(chunk)
    for _ in range(10):
        await asyncio.sleep(0)
    responses = [b"HTTP/1.1" + part for part in bytes(transport.written).split(b"HTTP/1.1")[1:]]
    return transport, responses


def post(body: bytes, path: str = "/v1/x") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k1\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def test_one_request_split_at_every_byte() -> None:
    raw = post(b'{"a":1}', "/v1/x?limit=2")
    _, responses = await feed(*(raw[i:i + 1] for i in range(len(raw))))
    assert len(responses) == 1
    assert responses[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert responses[0].endswith(b'{"path":"/v1/x","query":"limit=2","body":"{\\"a\\":1}","key":"k1"}')


async def test_pipelined_requests_answered_in_order() -> None:
    _, responses = await feed(post(b"1", "/first") + post(b"2", "/second") + post(b"3", "/third"))
    assert [r.split(b'"path":"')[1].split(b'"')[0] for r in responses] == [b"/first", b"/second", b"/third"]


async def test_oversized_body_is_413_and_closes() -> None:
    transport, responses = await feed(post(b"x" * (http.BODY_BYTES_MAX + 1)))
    assert responses[0].startswith(b"HTTP/1.1 413 ")
    assert b'"code":"request_too_large"' in responses[0]
    assert transport.closed


async def test_chunked_body_over_the_limit_is_413() -> None:
    head = b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (40_000, b"y" * 40_000)
    transport, responses = await feed(head, chunk, chunk)
    assert responses[0].startswith(b"HTTP/1.1 413 ")
    assert transport.closed


async def test_headers_over_the_limit_are_431() -> None:
    raw = b"GET / HTTP/1.1\r\nX-Big: " + b"h" * (http.HEADER_BYTES_MAX + 10) + b"\r\n\r\n"
    _, responses = await feed(raw)
    assert responses[0].startswith(b"HTTP/1.1 431 ")


async def test_garbage_is_400_and_closes() -> None:
    transport, responses = await feed(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    assert responses[0].startswith(b"HTTP/1.1 400 ")
    assert b'"code":"malformed_http"' in responses[0]
    assert transport.closed


async def test_connection_close_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    # The write side is shut with the answer; the connection closes when the client does, or after the
    # linger (switch.common.drain.close_gently): closed at once with bytes unread, it would be reset.
    monkeypatch.setattr(drain, "LINGER_S", 0.01)
    raw = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    transport, responses = await feed(raw)
    assert b"connection: close" in responses[0]
    assert transport.eof_written and transport.reading
    await asyncio.sleep(0.05)
    assert transport.closed


async def test_a_header_that_may_come_once_is_refused_twice() -> None:
    for name in ("Authorization: Bearer a", "Idempotency-Key: k2", "Host: y", "Content-Type: text/plain"):
        raw = (b"POST /v1/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer b\r\nIdempotency-Key: k1\r\n"
               b"Content-Type: application/json\r\n" + name.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
        transport, responses = await feed(raw)
        assert len(responses) == 1 and responses[0].startswith(b"HTTP/1.1 400"), name
        assert b'"code":"duplicate_header"' in responses[0] and transport.closed, name
    # Other headers may repeat; the request is served.
    _, responses = await feed(b"GET /v1/x HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\n\r\n")
    assert responses[0].startswith(b"HTTP/1.1 200")


async def test_two_content_lengths_are_refused() -> None:
    transport, responses = await feed(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
                                      b"\r\n{}")
    # httptools refuses them itself (its message names HTTP/1.1, which splits our capture in two).
    assert responses[0].startswith(b"HTTP/1.1 400") and transport.closed
    assert bytes(transport.written).count(b"HTTP/1.1 400") == 1


async def test_transfer_encoding_on_http_1_0_is_refused() -> None:
    transport, responses = await feed(b"POST /v1/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"2\r\n{}\r\n0\r\n\r\n")
    assert len(responses) == 1 and b" 400 " in responses[0].split(b"\r\n")[0] and transport.closed
    assert b"not allowed in HTTP/1.0" in responses[0]


async def test_a_connection_is_closed_once_idle_for_the_keepalive_time_after_its_last_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One timer, moved on when it fires early: requests every 0.1 s keep the connection past its 0.25 s idle
    # time, and it closes 0.25 s after the last answer, not 0.25 s after it was opened.
    monkeypatch.setattr(http, "KEEPALIVE_IDLE_S", 0.25)
    loop = asyncio.get_running_loop()
    protocol = HttpProtocol(echo)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0.1)
        protocol.data_received(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(10):
        await asyncio.sleep(0)
    last_answer = loop.time()
    assert transport.written.count(b"HTTP/1.1 200") == 5 and not transport.closed
    while not transport.closed and loop.time() - last_answer < 2.0:
        await asyncio.sleep(0.01)
    assert transport.closed and 0.24 <= loop.time() - last_answer < 1.0


def connect(handler: http.Handler = echo) -> tuple[HttpProtocol, FakeTransport]:
    protocol = HttpProtocol(handler)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def feed_until_closed(protocol: HttpProtocol, transport: FakeTransport, read: bytes) -> int:
    """Send `read` again and again, at most 1 MiB, until the connection is closed: how many bytes were sent."""
    sent = 0
    while not transport.closed and sent < 1024 * 1024:
        protocol.data_received(read)
        sent += len(read)
    return sent


async def test_a_header_that_never_ends_is_431_once_the_head_is_too_large() -> None:
    # httptools holds an unfinished header in one bytes object it grows a read at a time (quadratic), and
    # calls on_header only when it ends: only the bytes read can stop it.
    protocol, transport = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
    sent = feed_until_closed(protocol, transport, b"a" * 4096)
    assert bytes(transport.written).startswith(b"HTTP/1.1 431 ")
    assert b'"code":"request_too_large"' in transport.written
    assert sent <= http.HEAD_BYTES_MAX + 4096


async def test_a_trailer_that_never_ends_is_431() -> None:
    protocol, transport = connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: ")
    sent = feed_until_closed(protocol, transport, b"t" * 4096)
    assert bytes(transport.written).startswith(b"HTTP/1.1 431 ")
    assert sent <= http.HEAD_BYTES_MAX + 4096


async def test_a_head_at_its_limits_in_small_reads_is_served() -> None:
    # The bound on the bytes read must not refuse what the URL and header limits allow, nor count a
    # chunked body as a head.
    url = b"/v1/x?q=" + b"u" * (http.URL_BYTES_MAX - 20)
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"h" * 1000) for i in range(15))
    chunk = b"b" * (http.BODY_BYTES_MAX - 100)
    raw = (b"POST " + url + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Transfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    _, responses = await feed(*(raw[i:i + 100] for i in range(0, len(raw), 100)))
    assert len(responses) == 1 and responses[0].startswith(b"HTTP/1.1 200 ")


async def test_trailer_fields_do_not_reach_the_handler_as_headers() -> None:
    seen: list[Request] = []

    async def record(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    protocol, transport = connect(record)
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\n{}\r\n0\r\nIdempotency-Key: k2\r\nAuthorization: Bearer sk_other\r\n\r\n")
    for _ in range(10):
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert len(seen) == 1 and seen[0].body == b"{}"
    assert "idempotency-key" not in seen[0].headers and "authorization" not in seen[0].headers


async def test_more_requests_in_one_read_than_the_pipeline_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading is paused when the queue fills, but the rest of a read is still parsed: one 256 KiB read can
    # hold thousands of requests. The first past the bound is answered 503 in its turn and the connection
    # closed; nothing after it is read.
    monkeypatch.setattr(drain, "LINGER_S", 0.01)
    seen: list[str] = []

    async def record(request: Request) -> Response:
        seen.append(request.path)
        return Response(200)

    protocol, transport = connect(record)
    sent = http.PIPELINE_QUEUED_MAX + 100
    protocol.data_received(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(sent)))
    protocol.data_received(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(50 * http.PIPELINE_QUEUED_MAX):
        await asyncio.sleep(0)
    assert seen == [f"/{i}" for i in range(http.PIPELINE_QUEUED_MAX)]
    answers = bytes(transport.written).split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200"] * http.PIPELINE_QUEUED_MAX + [b"503"]
    assert b'"code":"overloaded"' in answers[-1] and b"connection: close" in answers[-1]
    await asyncio.sleep(0.05)
    assert transport.closed


async def test_a_full_pipeline_in_one_read_is_served_and_reading_resumes() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" * http.PIPELINE_DEPTH_MAX)
    assert not transport.reading
    for _ in range(50):
        await asyncio.sleep(0)
    assert transport.written.count(b"HTTP/1.1 200 ") == http.PIPELINE_DEPTH_MAX
    assert transport.reading and not transport.closed


async def test_a_read_deeper_than_the_pause_is_still_served_whole() -> None:
    protocol, transport = connect()
    sent = http.PIPELINE_DEPTH_MAX + 5
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" * sent)
    for _ in range(50 * sent):
        await asyncio.sleep(0)
    assert transport.written.count(b"HTTP/1.1 200 ") == sent and not transport.closed
