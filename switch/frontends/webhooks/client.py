"""The webhooks' outgoing HTTP: one POST per attempt, over a kept-alive connection to the same checked
address when one is idle (Connections), bounded in time (connect and answer within DELIVERY_TIMEOUT_S)
and in what it reads of the answer, to an address checked against
SSRF: loopback, private, link-local (cloud metadata), multicast and reserved ranges are refused unless
the deployment allows loopback (the dev stack and tests do). The name is resolved once, checked, and the
checked address is the one connected to (TLS still verifies the name), so a name cannot change its
answer between the check and the connect."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from switch.common.futures import time_out

DELIVERY_TIMEOUT_S = 10.0
ANSWER_READ_MAX = 4096
ANSWER_HEAD_MAX = 16384        # an answer's status line and headers; longer is a failed attempt
EXCERPT_MAX = 1024


class RefusedDestination(ValueError):
    """A URL the webhooks do not send to (scheme, or an address in a refused range)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None           # None: no HTTP answer
    error: str | None
    latency_ms: int
    excerpt: str | None


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, or RefusedDestination."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedDestination("only http and https URLs with a host are allowed")
    if parts.username or parts.password:
        raise RefusedDestination("a URL with credentials is not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedDestination("the URL's port does not read") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def check_address(address: str, allow_loopback: bool) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback and allow_loopback:
        return
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or \
            ip.is_unspecified or not ip.is_global:
        raise RefusedDestination(f"the destination {ip} is in a refused range (loopback, private, link-local, "
                                 "multicast or reserved)")


async def resolve(host: str, port: int, allow_loopback: bool) -> str:
    """The address to connect to: every address the name has must pass (a name with one private address
    among public ones is refused)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise RefusedDestination("the name has no address")
    for info in infos:
        check_address(str(info[4][0]), allow_loopback)
    return str(infos[0][4][0])


class Connections:
    """Idle keep-alive connections per destination (scheme, name, checked address, port): an endpoint that
    takes many deliveries gets them over a few open connections instead of a connect and a close each.
    Bounded: at most IDLE_PER_DESTINATION_MAX idle per destination and IDLE_MAX in all; a connection idle
    for IDLE_TIMEOUT_S is closed rather than reused (servers close theirs after a while)."""

    IDLE_PER_DESTINATION_MAX = 16
    IDLE_MAX = 256
    IDLE_TIMEOUT_S = 20.0

    def __init__(self) -> None:
        self.idle: dict[Destination, list[tuple[float, Link]]] = {}
        self.count = 0

    def take(self, destination: Destination) -> Link | None:
        stack = self.idle.get(destination)
        while stack:
            since, link = stack.pop()
            self.count -= 1
            if time.monotonic() - since < self.IDLE_TIMEOUT_S and link.open:
                return link
            link.close()
        self.idle.pop(destination, None)
        return None

    def give(self, destination: Destination, link: Link) -> None:
        stack = self.idle.setdefault(destination, [])
        if len(stack) >= self.IDLE_PER_DESTINATION_MAX or self.count >= self.IDLE_MAX:
            link.close()
            return
        stack.append((time.monotonic(), link))
        self.count += 1

    def close(self) -> None:
        for stack in self.idle.values():
            for _, link in stack:
                link.close()
        self.idle.clear()
        self.count = 0


class Link(asyncio.Protocol):
    """One connection, one exchange at a time: the request is written as it is, and the answer read as
    it comes (its head, then at most ANSWER_READ_MAX of its body), straight from the transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.head: tuple[int, int | None, bool] | None = None    # status, Content-Length, closing
        self.body_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.open = cast(asyncio.Transport, transport), True   # uvloop's is not a subclass

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        """(status, the body read, whether the connection can be kept) once the answer is in."""
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.head, self.body_at = None, 0
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            self.close()                            # an answer nobody asked for
            return
        try:
            self._answer_so_far()
        except ValueError as error:
            self.waiter.set_exception(error)
            self.close()

    def _answer_so_far(self) -> None:
        assert self.waiter is not None
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > ANSWER_HEAD_MAX:
                    raise ValueError("the answer's head is too long")
                return
            self.head, self.body_at = _parse_head(bytes(self.buffer[:end + 4])), end + 4
        status, length, closing = self.head
        body = self.buffer[self.body_at:]
        if length is not None and length <= ANSWER_READ_MAX:
            if len(body) >= length:
                self._done(status, bytes(body[:length]), not closing)
        elif len(body) >= ANSWER_READ_MAX:
            self._done(status, bytes(body[:ANSWER_READ_MAX]), False)

    def _done(self, status: int, body: bytes, keep: bool) -> None:
        assert self.waiter is not None
        self.waiter.set_result((status, body, keep))
        self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            if self.head is not None and (self.head[1] is None or self.head[1] > ANSWER_READ_MAX):
                self._done(self.head[0], bytes(self.buffer[self.body_at:][:ANSWER_READ_MAX]), False)
            else:
                self.waiter.set_exception(ConnectionResetError("the connection closed before the answer"))

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


# (scheme, host as in the URL, the checked address connected to, port)
Destination = tuple[str, str, str, int]


async def post(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
               tls: ssl.SSLContext | None = None, timeout_s: float = DELIVERY_TIMEOUT_S,
               connections: Connections | None = None) -> Answer:
    started = time.perf_counter()
    try:
        status, excerpt = await _exchange(url, body, headers, allow_loopback, tls, connections,
                                          asyncio.get_running_loop().time() + timeout_s)
    except RefusedDestination as refused:
        return Answer(None, f"refused: {refused}", _ms(started), None)
    except TimeoutError:
        return Answer(None, f"no answer within {timeout_s:.0f} s", _ms(started), None)
    except (OSError, ValueError) as error:       # refused, reset or closed early; not an HTTP answer
        return Answer(None, f"connection failed: {error.__class__.__name__}", _ms(started), None)
    return Answer(status, None, _ms(started), excerpt)


async def _exchange(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
                    tls: ssl.SSLContext | None, connections: Connections | None, deadline: float) -> tuple[int, str]:
    """The attempt, all of it by `deadline` (the loop's clock), or TimeoutError. The exchange is bounded by a
    timer on its answer's future; a name's resolution (on every attempt) and a new connection by
    asyncio.timeout_at, whose context manager cost 7 µs of the switch's CPU a payment when it wrapped every
    attempt (an endpoint given by its address, as the bench's, skips the resolution)."""
    scheme, host, port, start, literal = _target(url, allow_loopback)
    if literal is not None:
        address = literal
    else:
        async with asyncio.timeout_at(deadline):
            address = await resolve(host, port, allow_loopback)
    destination = (scheme, host, address, port)
    request = b"".join((start, b"Content-Length: %d\r\n" % len(body),
                        "".join(f"{name}: {value}\r\n" for name, value in headers).encode(), b"\r\n", body))
    reused = connections.take(destination) if connections is not None else None
    if reused is not None:
        try:
            return await _round_trip(destination, reused, request, connections, deadline)
        except TimeoutError:
            raise
        except OSError:
            pass                        # the server closed it while idle: once more on a new connection
    async with asyncio.timeout_at(deadline):
        opened = await _connect(destination, tls)
    return await _round_trip(destination, opened, request, connections, deadline)


@functools.lru_cache(maxsize=1024)
def _target(url: str, allow_loopback: bool) -> tuple[str, str, int, bytes, str | None]:
    """(scheme, host, port, the request's head up to its length, the checked address if the host is an
    address literal, else None: a name is resolved and checked on every attempt). Worked out once per URL:
    nothing in it can change (a refused URL raises, and is worked out again the next time)."""
    scheme, host, port, path = check_url(url)
    start = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
             "User-Agent: switch-webhooks/1\r\n").encode()
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        return scheme, host, port, start, None
    check_address(literal, allow_loopback)
    return scheme, host, port, start, literal


async def _connect(destination: Destination, tls: ssl.SSLContext | None) -> Link:
    scheme, host, address, port = destination
    context = (tls or ssl.create_default_context()) if scheme == "https" else None
    _, link = await asyncio.get_running_loop().create_connection(
        Link, address, port, ssl=context, server_hostname=host if context else None)
    return link


async def _round_trip(destination: Destination, link: Link, request: bytes,
                      connections: Connections | None, deadline: float) -> tuple[int, str]:
    """Send, read the answer's head and at most ANSWER_READ_MAX of its body, by `deadline`; the connection
    goes back to the pool only when the whole answer was read and the server keeps it open."""
    keep = False
    timer = None
    try:
        answer = link.exchange(request)
        timer = asyncio.get_running_loop().call_at(deadline, time_out, answer)
        status, body, keep = await answer
    finally:
        if timer is not None:
            timer.cancel()
        if keep and connections is not None and link.open:
            connections.give(destination, link)
        else:
            link.close()
    return status, body[:EXCERPT_MAX].decode("utf-8", "replace").replace("\x00", "")


def _parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """(status, Content-Length or None, whether the server closes the connection)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    fields = {name.strip().lower(): value.strip() for name, _, value in
              (line.partition(":") for line in lines[1:] if line)}
    length = fields.get("content-length")
    chunked = "chunked" in fields.get("transfer-encoding", "").lower()
    closing = fields.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0" or chunked
    return int(parts[1]), int(length) if length and length.isdigit() and not chunked else None, closing


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
