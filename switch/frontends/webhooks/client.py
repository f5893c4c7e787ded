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
from urllib.parse import urlsplit

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
        self.idle: dict[Destination, list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.count = 0

    def take(self, destination: Destination) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        stack = self.idle.get(destination)
        while stack:
            since, reader, writer = stack.pop()
            self.count -= 1
            if time.monotonic() - since < self.IDLE_TIMEOUT_S and not reader.at_eof() and \
                    not writer.is_closing():
                return reader, writer
            writer.close()
        self.idle.pop(destination, None)
        return None

    def give(self, destination: Destination, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stack = self.idle.setdefault(destination, [])
        if len(stack) >= self.IDLE_PER_DESTINATION_MAX or self.count >= self.IDLE_MAX:
            writer.close()
            return
        stack.append((time.monotonic(), reader, writer))
        self.count += 1

    def close(self) -> None:
        for stack in self.idle.values():
            for _, _, writer in stack:
                writer.close()
        self.idle.clear()
        self.count = 0


# (scheme, host as in the URL, the checked address connected to, port)
Destination = tuple[str, str, str, int]


async def post(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
               tls: ssl.SSLContext | None = None, timeout_s: float = DELIVERY_TIMEOUT_S,
               connections: Connections | None = None) -> Answer:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            status, excerpt = await _exchange(url, body, headers, allow_loopback, tls, connections)
    except RefusedDestination as refused:
        return Answer(None, f"refused: {refused}", _ms(started), None)
    except TimeoutError:
        return Answer(None, f"no answer within {timeout_s:.0f} s", _ms(started), None)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        return Answer(None, f"connection failed: {error.__class__.__name__}", _ms(started), None)
    return Answer(status, None, _ms(started), excerpt)


async def _exchange(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
                    tls: ssl.SSLContext | None, connections: Connections | None) -> tuple[int, str]:
    scheme, host, port, start, literal = _target(url, allow_loopback)
    address = literal if literal is not None else await resolve(host, port, allow_loopback)
    destination = (scheme, host, address, port)
    request = b"".join((start, b"Content-Length: %d\r\n" % len(body),
                        "".join(f"{name}: {value}\r\n" for name, value in headers).encode(), b"\r\n", body))
    reused = connections.take(destination) if connections is not None else None
    if reused is not None:
        try:
            return await _round_trip(destination, reused, request, connections)
        except (OSError, asyncio.IncompleteReadError):
            pass                        # the server closed it while idle: once more on a new connection
    opened = await _connect(destination, tls)
    return await _round_trip(destination, opened, request, connections)


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


async def _connect(destination: Destination, tls: ssl.SSLContext | None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    scheme, host, address, port = destination
    context = (tls or ssl.create_default_context()) if scheme == "https" else None
    return await asyncio.open_connection(address, port, ssl=context, server_hostname=host if context else None,
                                         limit=ANSWER_HEAD_MAX)


async def _round_trip(destination: Destination, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                      request: bytes, connections: Connections | None) -> tuple[int, str]:
    """Send, read the answer's head and at most ANSWER_READ_MAX of its body; the connection goes back to
    the pool only when the whole answer was read and the server keeps it open."""
    reader, writer = stream
    keep = False
    try:
        writer.write(request)
        await writer.drain()
        status, length, closing = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        if length is not None and length <= ANSWER_READ_MAX:
            body = await reader.readexactly(length)
            keep = not closing and connections is not None
        else:
            body = await reader.read(ANSWER_READ_MAX)
    finally:
        if keep and connections is not None:
            connections.give(destination, reader, writer)
        else:
            writer.close()
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
