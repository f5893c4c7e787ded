"""A minimal asyncio HTTP/1.1 keep-alive client on httptools, for the load generator and the tests.

One ``Connection`` sends one request at a time (no pipelining) and reads its response; it is cheap
enough (a few µs per request) that the load generator is never the bottleneck of `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import httptools

from switch.common.futures import time_out
from switch.common.tls import client_context as tls_client_context

RESPONSE_BYTES_MAX = 1 << 20


@dataclass
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class _ResponseReader:
    """httptools callbacks collecting one response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > RESPONSE_BYTES_MAX:
            raise ValueError("response larger than RESPONSE_BYTES_MAX")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _ClientProtocol(asyncio.Protocol):
    """The socket of one Connection: feeds the parser of the response being read and wakes its waiter."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.collector: _ResponseReader | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        collector, waiter = self.collector, self.waiter
        if collector is None or waiter is None or waiter.done():
            self._fail(ConnectionResetError("data from the server while no request was waiting"))
            return
        try:
            collector.parser.feed_data(data)
        except Exception as error:  # noqa: BLE001 - a malformed or oversized response fails the request
            self._fail(error)
            return
        if collector.done:
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("server closed the connection"))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class Connection:
    """One keep-alive connection on a plain asyncio Protocol (no stream layer: the load generator's CPU
    per request counts in `make bench`)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.protocol: _ClientProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self.protocol is not None and self.protocol.transport is not None

    async def open(self) -> None:
        _, self.protocol = await asyncio.get_running_loop().create_connection(
            _ClientProtocol, self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None)

    async def close(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def request(self, method: str, path: str, *, body: bytes | dict | None = None,  # type: ignore[type-arg]
                      headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> HttpResponse:
        if not self.is_open:
            await self.open()
        protocol = self.protocol
        assert protocol is not None and protocol.transport is not None
        payload = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(payload)}"]
        if payload and not any(name.lower() == "content-type" for name in headers or {}):
            lines.append("content-type: application/json")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        loop = asyncio.get_running_loop()
        collector = protocol.collector = _ResponseReader()
        waiter = protocol.waiter = loop.create_future()
        protocol.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        # A timer handle failing this request's waiter, not asyncio.timeout (about a seventh of the load
        # generator's CPU in a py-spy profile of the mix at saturation).
        timer = loop.call_later(timeout_s, time_out, waiter)
        try:
            await waiter
        except BaseException:
            await self.close()      # the connection is in an unknown state: never reuse it
            raise
        finally:
            timer.cancel()
            protocol.collector = protocol.waiter = None
        if collector.headers.get("connection", "").lower() == "close":
            await self.close()
        return HttpResponse(collector.parser.get_status_code(), b"".join(collector.body), collector.headers)


class Client:
    """Connections to one server, with the API key and an optional Idempotency-Key per call."""

    def __init__(self, base_url: str, api_key: str | None = None, *, ca_file: str | None = None) -> None:
        """`https://` URLs speak TLS, verifying the server against `ca_file` (or the system's roots)."""
        scheme, _, host_port = base_url.rpartition("://")
        host, _, port = host_port.rstrip("/").partition(":")
        self.host, self.port = host, int(port or (443 if scheme == "https" else 80))
        self.tls = tls_client_context(ca_file) if scheme == "https" else None
        self.api_key = api_key
        self.idle: list[Connection] = []

    async def request(self, method: str, path: str, body: bytes | dict | None = None,  # type: ignore[type-arg]
                      *, idempotency_key: str | None = None, api_key: str | None = None,
                      headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> HttpResponse:
        all_headers = dict(headers or {})
        key = api_key if api_key is not None else self.api_key
        if key:
            all_headers.setdefault("authorization", f"Bearer {key}")
        if idempotency_key:
            all_headers["idempotency-key"] = idempotency_key
        connection = self.idle.pop() if self.idle else Connection(self.host, self.port, self.tls)
        response = await connection.request(method, path, body=body, headers=all_headers, timeout_s=timeout_s)
        if connection.is_open:
            self.idle.append(connection)
        return response

    async def close(self) -> None:
        for connection in self.idle:
            await connection.close()
        self.idle.clear()
