"""A lean HTTP/1.1 server: an asyncio protocol on httptools, no framework.

Split like uvicorn's httptools protocol: the protocol interface (connection_made / data_received), the
parser callbacks (on_url, on_header, on_body, on_message_complete) and the application interface (one
``async handler(Request) -> Response``). Requests on one connection are answered in order (HTTP/1.1
pipelining); every limit is named: header bytes, body bytes, requests queued per connection.
Bound with SO_REUSEPORT so several worker processes can serve one port.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from switch.common.drain import Drain, close_gently

log = logging.getLogger(__name__)

BODY_BYTES_MAX = 64 * 1024
HEADER_BYTES_MAX = 16 * 1024
URL_BYTES_MAX = 4096
# The request line and header section as read, framing included; a chunked body's trailer section too.
# httptools holds a field it has not finished in one bytes object grown a read at a time (quadratic), and
# hands it over only when it ends: only the bytes read can stop a field that never ends. The room beyond the
# URL and header limits is for framing, so that those limits, which say what is too large, come first.
HEAD_BYTES_MAX = URL_BYTES_MAX + 2 * HEADER_BYTES_MAX
PIPELINE_DEPTH_MAX = 16              # queued requests at which reading pauses
# ... and past which a read's further requests are refused: a pause takes effect only after the read, and
# one read can hold thousands of small requests. Well above the pause, so a client that pipelines deeply
# between reads is only slowed, never refused.
PIPELINE_QUEUED_MAX = 16 * PIPELINE_DEPTH_MAX
KEEPALIVE_IDLE_S = 75.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("latin-1") for status in HTTPStatus
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    remote: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, keep_alive: bool) -> bytes:
        head = [_STATUS_LINES.get(self.status) or f"HTTP/1.1 {self.status} Unknown\r\n".encode()]
        head.append(b"content-type: %s\r\ncontent-length: %d\r\n" % (self.content_type.encode(), len(self.body)))
        for name, value in self.headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        head.append(self.body)
        return b"".join(head)


Handler = Callable[[Request], Awaitable[Response]]


# Headers a request may carry once: two of them would mean two different requests to two readers (who
# is authenticated, which idempotency key, where the body ends).
SINGLE_HEADERS = frozenset({"authorization", "idempotency-key", "content-length", "content-type", "host",
                            "transfer-encoding"})


class _Overfull(Exception):
    """Raised in on_message_complete to stop the parser: the queue is full (see `HttpProtocol.overfull`)."""


class _Refused(Exception):
    """Raised in a parser callback: the request is answered with this error and the connection closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_body(status: int, code: str, message: str) -> bytes:
    """A Stripe-style error for failures found before the application sees the request."""
    import msgspec

    kind = "invalid_request_error" if status < 500 else "api_error"
    return msgspec.json.encode({"error": {"type": kind, "code": code, "message": message, "param": None}})


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection. Parsing is synchronous; each request runs as a task, answered in order."""

    __slots__ = ("handler", "loop", "transport", "parser", "url", "headers", "header_bytes", "body_parts",
                 "body_bytes", "queue", "worker", "closing", "remote", "idle_timer", "idle_since", "paused", "refused",
                 "drain", "in_head", "in_fields", "field_bytes", "overfull")

    def __init__(self, handler: Handler, drain: Drain | None = None) -> None:
        self.handler = handler
        self.drain = drain                  # the worker's, when it stops: see switch.common.drain
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body_parts: list[bytes] = []
        self.body_bytes = 0
        self.queue: collections.deque[tuple[Request | None, bool]] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.closing = False
        self.remote = ""
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.paused = False
        self.refused: _Refused | None = None
        self.in_head = False                # from a request's first byte to the end of its header section
        self.in_fields = False              # in a header or trailer section, where httptools may hold a field
        self.field_bytes = 0                # bytes of the reads wholly inside that section
        self.overfull = False               # more requests came than the queue holds: nothing more is read

    # ----- protocol interface -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else ""
        self._arm_idle_timer()
        if self.drain is not None:
            self.drain.connections.add(self)
            if self.drain.stopping:                 # accepted just before the port closed
                self.close_when_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.idle_timer:
            self.idle_timer.cancel()
        if self.drain is not None:
            self.drain.connections.discard(self)
        # A request already being handled runs to completion: a payment must reach its final write even
        # when the merchant hangs up. Its response is simply dropped.

    def data_received(self, data: bytes) -> None:
        if self.closing or self.overfull:
            return
        # Counted before parsing: a read that ends the section was counted in vain but is not checked, and
        # one that starts a new section starts its count at 0 (on_message_begin, on_chunk_header).
        if self.in_fields:
            self.field_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrade_not_supported", "Protocol upgrades are not supported.")
        except httptools.HttpParserError:
            # httptools wraps exceptions raised in callbacks; a refusal of ours is recorded on self. A full
            # queue stops the parser too, but its answer waits its turn (see on_message_complete).
            if self.refused is not None:
                self._reject(self.refused.status, self.refused.code, str(self.refused))
            elif not self.overfull:
                self._reject(400, "malformed_http", "The request is not valid HTTP/1.1.")
        else:
            if self.in_fields and self.field_bytes > HEAD_BYTES_MAX:
                self._reject(431, "request_too_large", f"The header section is larger than {HEAD_BYTES_MAX} bytes.")

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer a request we could not parse and close: the byte stream can no longer be trusted."""
        self.closing = True
        if self.transport and not self.transport.is_closing():
            self.transport.write(Response(status, error_body(status, code, message)).encode(keep_alive=False))
            self.transport.close()

    def _arm_idle_timer(self) -> None:
        """Idle from now: closed KEEPALIVE_IDLE_S after its last answer unless it gets a request. The timer is
        made when none is pending and moved on when it fires early, not made anew after every answer (a
        timer made and cancelled cost 3 µs a request)."""
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_later(KEEPALIVE_IDLE_S, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self.idle_timer = None
        if self.queue or self.worker is not None or not self.transport:
            return                                  # busy: armed again when its last answer is written
        left_s = self.idle_since + KEEPALIVE_IDLE_S - self.loop.time()
        if left_s > 0:
            self.idle_timer = self.loop.call_later(left_s, self._idle_timeout)
        else:
            self.transport.close()

    def close_when_idle(self) -> None:
        """The worker is stopping: closed now when no request runs on it; else it reads no more requests,
        and `_drain` closes it after the last answer of those it read (which says `connection: close`)."""
        if self.transport is None or self.closing:
            return
        if self.worker is None and not self.queue:
            self.closing = True
            close_gently(self.transport)
        elif not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # ----- parser callbacks ---------------------------------------------------------------------------

    def _too_large(self, status: int, message: str) -> _Refused:
        return self._refuse(status, "request_too_large", message)

    def _refuse(self, status: int, code: str, message: str) -> _Refused:
        self.refused = _Refused(status, code, message)
        return self.refused

    def on_message_begin(self) -> None:
        self.in_head = True
        self.in_fields = True
        self.field_bytes = 0
        self.url = b""
        self.headers = {}
        self.header_bytes = 0
        self.body_parts = []
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > URL_BYTES_MAX:
            raise self._too_large(414, f"The URL is longer than {URL_BYTES_MAX} bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # A trailer field, after a chunked body: dropped, as RFC 9110 6.5.1 allows. Merged, a trailer
            # Authorization or Idempotency-Key would reach the handler as if it had been sent as a header.
            return
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > HEADER_BYTES_MAX:
            raise self._too_large(431, f"The headers are larger than {HEADER_BYTES_MAX} bytes.")
        key = name.decode("latin-1").lower()
        if key in self.headers and key in SINGLE_HEADERS:
            raise self._refuse(400, "duplicate_header", f"The {key} header may be sent only once.")
        self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_fields = False
        if "transfer-encoding" in self.headers and self.parser.get_http_version() == "1.0":
            # RFC 9112 6.1: a Transfer-Encoding in an HTTP/1.0 message cannot be trusted to frame the body.
            raise self._refuse(400, "malformed_http", "Transfer-Encoding is not allowed in HTTP/1.0.")
        length = self.headers.get("content-length")
        if length and length.isascii() and length.isdigit() and int(length) > BODY_BYTES_MAX:
            raise self._too_large(413, f"The request body is larger than {BODY_BYTES_MAX} bytes.")

    def on_chunk_header(self) -> None:
        # What follows a chunk's size line is its data, or after the last chunk the trailer section.
        self.in_fields = True
        self.field_bytes = 0

    def on_body(self, body: bytes) -> None:
        self.in_fields = False
        self.body_bytes += len(body)
        if self.body_bytes > BODY_BYTES_MAX:
            raise self._too_large(413, f"The request body is larger than {BODY_BYTES_MAX} bytes.")
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if len(self.queue) >= PIPELINE_QUEUED_MAX:
            # Reading was paused when the queue filled, but the rest of that read is still parsed, and one
            # read can hold thousands of small requests. This one (None in the queue) is answered 503 in its
            # turn (`_drain`), the connection is closed after it, and nothing after it is parsed or read.
            self.overfull = True
            self.queue.append((None, False))
            raise _Overfull()
        path, _, query = self.url.decode("latin-1").partition("?")
        method = self.parser.get_method().decode("ascii")
        request = Request(method, path, query, self.headers, b"".join(self.body_parts), self.remote)
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) >= PIPELINE_DEPTH_MAX and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = self.loop.create_task(self._drain())
            if self.drain is not None:
                self.drain.began()

    # ----- application interface ----------------------------------------------------------------------

    async def _drain(self) -> None:
        try:
            while self.queue:
                request, keep_alive = self.queue.popleft()
                if request is None:                     # the request that found the queue full
                    response = Response(503, error_body(503, "overloaded", f"More than {PIPELINE_QUEUED_MAX} "
                                                        "requests were sent ahead of their answers."))
                else:
                    response = await self._call_handler(request)
                if self.closing or self.transport is None or self.transport.is_closing():
                    continue
                stopping = self.overfull or (self.drain is not None and self.drain.stopping)
                if stopping and not self.queue:
                    keep_alive = False              # the worker is stopping: this is the connection's last
                self.transport.write(response.encode(keep_alive))
                if not keep_alive:
                    self.closing = True
                    close_gently(self.transport)
                    return
                if self.paused and len(self.queue) < PIPELINE_DEPTH_MAX // 2 and not stopping:
                    self.paused = False
                    self.transport.resume_reading()
        finally:
            self.worker = None
            if self.drain is not None:
                self.drain.ended()
            if not self.closing:
                self._arm_idle_timer()

    async def _call_handler(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            # The application maps every expected failure itself; this is the last guard.
            log.exception("unhandled error in %s %s", request.method, request.path)
            return Response(500, error_body(500, "internal_error", "An internal error occurred."))


async def serve(handler: Handler, host: str, port: int, *, backlog: int = 2048, reuse_port: bool = True,
                tls: ssl.SSLContext | None = None, drain: Drain | None = None) -> asyncio.Server:
    """Listen with SO_REUSEPORT so several worker processes can share one port; HTTPS with `tls`. With
    `drain`, the worker's stop finishes what the connections took on (switch.common.drain)."""
    loop = asyncio.get_running_loop()
    if tls is None:
        return await loop.create_server(lambda: HttpProtocol(handler, drain), host, port, backlog=backlog,
                                        reuse_port=reuse_port)
    return await loop.create_server(lambda: HttpProtocol(handler, drain), host, port, backlog=backlog,
                                    reuse_port=reuse_port, ssl=tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
