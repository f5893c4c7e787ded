"""The two ways to the switch: HTTP (httpx, pooled connections) and the merchant TCP protocol (one
multiplexed connection: many requests in flight, answers matched by id). Both answer
(HTTP status, the object or the error object, whether it was a replay, the seconds the switch asks a
rate-limited client to wait)."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import struct
from typing import Any

import httpx
import msgspec

from switch_sdk.errors import APIConnectionError, AuthenticationError

Answer = tuple[int, dict[str, Any], bool, float]

# operation -> (HTTP method, path template)
ROUTES: dict[str, tuple[str, str]] = {
    "payments.create": ("POST", "/v1/payments"),
    "payments.capture": ("POST", "/v1/payments/{payment_id}/capture"),
    "payments.cancel": ("POST", "/v1/payments/{payment_id}/cancel"),
    "refunds.create": ("POST", "/v1/refunds"),
    "payments.get": ("GET", "/v1/payments/{payment_id}"),
    "refunds.get": ("GET", "/v1/refunds/{refund_id}"),
}


class HttpTransport:
    def __init__(self, base_url: str, api_key: str, timeout_s: float, verify: ssl.SSLContext | bool | str = True,
                 connections_max: int = 32) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers={"authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s), verify=verify,
            limits=httpx.Limits(max_connections=connections_max, max_keepalive_connections=connections_max))

    async def call(self, op: str, target: dict[str, str], body: dict[str, Any] | None,
                   idempotency_key: str | None) -> Answer:
        method, template = ROUTES[op]
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        try:
            response = await self.client.request(method, template.format(**target), json=body, headers=headers)
        except httpx.TimeoutException as error:
            raise APIConnectionError(f"The switch did not answer in time ({type(error).__name__}).") from None
        except httpx.HTTPError as error:
            raise APIConnectionError(f"The switch could not be reached ({type(error).__name__}).") from None
        payload = response.json()
        replayed = response.headers.get("idempotent-replayed") == "true"
        retry_after = response.headers.get("retry-after", "")
        wait_s = float(retry_after) if retry_after.isdigit() else 0.0
        body = payload.get("error", payload) if response.status_code != 200 else payload
        return response.status_code, body, replayed, wait_s

    async def close(self) -> None:
        await self.client.aclose()


_HEADER = struct.Struct(">I")


class TcpTransport:
    """One connection, opened on first use and again after it breaks; requests in flight on a broken
    connection fail with APIConnectionError (the client retries them with the same idempotency key)."""

    def __init__(self, host: str, port: int, api_key: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.api_key, self.timeout_s, self.tls = host, port, api_key, timeout_s, tls
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.opening: asyncio.Lock | None = None
        self.reading: asyncio.Task[None] | None = None

    async def call(self, op: str, target: dict[str, str], body: dict[str, Any] | None,
                   idempotency_key: str | None) -> Answer:
        writer = await self._connection()
        rid = next(self.ids)
        message: dict[str, Any] = {"op": op, "id": rid, **target}
        if body is not None:
            message["body"] = body
        if idempotency_key:
            message["idempotency_key"] = idempotency_key
        future = self.pending[rid] = asyncio.get_running_loop().create_future()
        try:
            writer.write(_frame(message))
            answer = await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise APIConnectionError("The switch did not answer in time.") from None
        finally:
            self.pending.pop(rid, None)
        if answer.get("op") == "error":
            raise APIConnectionError(f"The switch closed the connection: {answer.get('code')}.")
        payload = answer.get("body") if answer["status"] == 200 else answer.get("error", {})
        wait_ms = answer.get("retry_after_ms")
        return (int(answer["status"]), payload or {}, bool(answer.get("replayed")),
                wait_ms / 1000 if isinstance(wait_ms, int) else 0.0)

    async def _connection(self) -> asyncio.StreamWriter:
        if self.writer is not None and not self.writer.is_closing():
            return self.writer
        self.opening = self.opening or asyncio.Lock()
        async with self.opening:
            if self.writer is not None and not self.writer.is_closing():
                return self.writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, ssl=self.tls), self.timeout_s)
                writer.write(_frame({"op": "hello", "v": 1, "api_key": self.api_key}))
                hello = await asyncio.wait_for(_read(reader), self.timeout_s)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
                raise APIConnectionError(f"The switch could not be reached ({type(error).__name__}).") from None
            if hello.get("op") != "hello":
                writer.close()
                if hello.get("code") == "invalid_api_key":
                    raise AuthenticationError("Invalid API key provided.", http_status=401,
                                              type_="authentication_error", code="invalid_api_key")
                raise APIConnectionError(f"The switch refused the connection: {hello.get('code')}.")
            self.writer = writer
            self.reading = asyncio.get_running_loop().create_task(self._read_answers(reader, writer))
            return writer

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                answer = await _read(reader)
                rid = answer.get("id")
                future = self.pending.get(rid) if isinstance(rid, int) else None
                if future is not None and not future.done():
                    future.set_result(answer)
                elif answer.get("op") == "error":
                    for waiting in self.pending.values():
                        if not waiting.done():
                            waiting.set_result(answer)
        except (OSError, asyncio.IncompleteReadError, msgspec.DecodeError):
            pass
        finally:
            writer.close()
            if self.writer is writer:
                self.writer = None
            for waiting in list(self.pending.values()):
                if not waiting.done():
                    waiting.set_exception(APIConnectionError("The connection to the switch broke."))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reading is not None:
            self.reading.cancel()


def _frame(message: dict[str, Any]) -> bytes:
    payload = msgspec.msgpack.encode(message)
    return _HEADER.pack(len(payload)) + payload


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return msgspec.msgpack.decode(await reader.readexactly(length))  # type: ignore[no-any-return]
