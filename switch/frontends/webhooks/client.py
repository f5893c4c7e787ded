"""The webhooks' outgoing HTTP: one POST per attempt over a fresh connection, bounded in time (connect and
answer within DELIVERY_TIMEOUT_S) and in what it reads of the answer, to an address checked against
SSRF: loopback, private, link-local (cloud metadata), multicast and reserved ranges are refused unless
the deployment allows loopback (the dev stack and tests do). The name is resolved once, checked, and the
checked address is the one connected to (TLS still verifies the name), so a name cannot change its
answer between the check and the connect."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

DELIVERY_TIMEOUT_S = 10.0
ANSWER_READ_MAX = 4096
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


async def post(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
               tls: ssl.SSLContext | None = None, timeout_s: float = DELIVERY_TIMEOUT_S) -> Answer:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            status, excerpt = await _exchange(url, body, headers, allow_loopback, tls)
    except RefusedDestination as refused:
        return Answer(None, f"refused: {refused}", _ms(started), None)
    except TimeoutError:
        return Answer(None, f"no answer within {timeout_s:.0f} s", _ms(started), None)
    except (OSError, ValueError, asyncio.IncompleteReadError) as error:
        return Answer(None, f"connection failed: {error.__class__.__name__}", _ms(started), None)
    return Answer(status, None, _ms(started), excerpt)


async def _exchange(url: str, body: bytes, headers: list[tuple[str, str]], allow_loopback: bool,
                    tls: ssl.SSLContext | None) -> tuple[int, str]:
    scheme, host, port, path = check_url(url)
    address = await resolve(host, port, allow_loopback)
    context = (tls or ssl.create_default_context()) if scheme == "https" else None
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=host if context else None)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "User-Agent: switch-webhooks/1", "Connection: close",
                *(f"{name}: {value}" for name, value in headers)]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        answer = await reader.read(ANSWER_READ_MAX)
    finally:
        writer.close()
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    body_start = answer.find(b"\r\n\r\n")
    excerpt = (answer[body_start + 4:][:EXCERPT_MAX].decode("utf-8", "replace").replace("\x00", "")
               if body_start >= 0 else "")
    return int(parts[1]), excerpt


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
