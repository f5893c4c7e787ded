"""`AsyncClient` and `Client`: one interface over both transports (`transport="http"` or `"tcp"`).

Every mutating call carries an idempotency key (one is made when none is given), and failures that are
safe to retry (the switch unreachable or the connection broken, 409 while the same key is in flight, 429,
503) are retried with the same key, backing off exponentially with jitter, and at least as long as a 429's
Retry-After asks, as Stripe's SDKs do. A retried payment is therefore made once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from switch_sdk import errors
from switch_sdk._transports import HttpTransport, TcpTransport
from switch_sdk.models import Payment, Refund, convert

T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({409, 429, 503})


class AsyncClient:
    """The switch's merchant API from asyncio code.

    >>> client = AsyncClient("sk_test_...", base_url="http://127.0.0.1:8080")              # HTTP
    >>> client = AsyncClient("sk_test_...", tcp_address="127.0.0.1:8090", transport="tcp")  # TCP
    """

    def __init__(self, api_key: str, *, base_url: str | None = None, tcp_address: str | None = None,
                 transport: str = "http", timeout_s: float = 30.0, max_retries: int = 3,
                 tls: ssl.SSLContext | None = None, backoff_s: float = 0.25) -> None:
        if transport == "http":
            if not base_url:
                raise ValueError("transport='http' needs base_url")
            self._transport: HttpTransport | TcpTransport = HttpTransport(base_url, api_key, timeout_s, tls or True)
        elif transport == "tcp":
            if not tcp_address:
                raise ValueError("transport='tcp' needs tcp_address (host:port)")
            host, _, port = tcp_address.rpartition(":")
            self._transport = TcpTransport(host.strip("[]") or "127.0.0.1", int(port), api_key, timeout_s, tls)
        else:
            raise ValueError("transport is 'http' or 'tcp'")
        self.transport = transport
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    async def create_payment(self, amount: int, currency: str, payment_method: str | dict[str, Any], *,
                             capture_method: str = "automatic", idempotency_key: str | None = None,
                             **fields: Any) -> Payment:
        """Authorize (capture_method="manual") or sell; `payment_method` is a token or {"card": {...}}.
        Raises CardError on a decline."""
        body = {"amount": amount, "currency": currency, "payment_method": payment_method,
                "capture_method": capture_method, **fields}
        return convert(await self._call("payments.create", {}, body, idempotency_key), Payment)  # type: ignore[no-any-return]

    async def capture(self, payment_id: str, amount_to_capture: int | None = None, *,
                      idempotency_key: str | None = None) -> Payment:
        body = {} if amount_to_capture is None else {"amount_to_capture": amount_to_capture}
        return convert(await self._call("payments.capture", {"payment_id": payment_id}, body,  # type: ignore[no-any-return]
                                        idempotency_key), Payment)

    async def cancel(self, payment_id: str, cancellation_reason: str | None = None, *,
                     idempotency_key: str | None = None) -> Payment:
        body = {} if cancellation_reason is None else {"cancellation_reason": cancellation_reason}
        return convert(await self._call("payments.cancel", {"payment_id": payment_id}, body,  # type: ignore[no-any-return]
                                        idempotency_key), Payment)

    async def refund(self, payment_id: str, amount: int | None = None, reason: str | None = None, *,
                     idempotency_key: str | None = None) -> Refund:
        body: dict[str, Any] = {"payment": payment_id}
        if amount is not None:
            body["amount"] = amount
        if reason is not None:
            body["reason"] = reason
        return convert(await self._call("refunds.create", {}, body, idempotency_key), Refund)  # type: ignore[no-any-return]

    async def get_payment(self, payment_id: str) -> Payment:
        return convert(await self._call("payments.get", {"payment_id": payment_id}, None, None), Payment)  # type: ignore[no-any-return]

    async def get_refund(self, refund_id: str) -> Refund:
        return convert(await self._call("refunds.get", {"refund_id": refund_id}, None, None), Refund)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, op: str, target: dict[str, str], body: dict[str, Any] | None,
                    idempotency_key: str | None) -> dict[str, Any]:
        mutating = op.endswith(("create", "capture", "cancel"))
        key = (idempotency_key or f"sdk-{uuid.uuid4()}") if mutating else None
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                status, payload, _, wait_s = await self._transport.call(op, target, body, key)
            except errors.APIConnectionError:
                if last:
                    raise
                await self._back_off(attempt)
                continue
            if status == 200:
                return payload
            if status in RETRYABLE_STATUSES and not last:
                await self._back_off(attempt, wait_s)
                continue
            raise errors.from_answer(status, payload)
        raise AssertionError("unreachable")

    async def _back_off(self, attempt: int, asked_s: float = 0.0) -> None:
        """Exponential, with full jitter: 0..backoff_s * 2**attempt, at most 8 s; never less than the wait
        a rate-limited answer asked for (Retry-After, retry_after_ms), itself at most 8 s."""
        jitter = random.uniform(0, min(8.0, self.backoff_s * 2 ** attempt))  # noqa: S311 - jitter
        await asyncio.sleep(max(jitter, min(8.0, asked_s)))


class Client:
    """The same interface as AsyncClient, for code without an event loop: calls run on a loop of the
    client's own (a daemon thread), so connections are pooled (HTTP) and multiplexed (TCP) across threads."""

    def __init__(self, api_key: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="switch-sdk", daemon=True)
        self._thread.start()
        self._async = self._run(_make(api_key, options))

    def create_payment(self, amount: int, currency: str, payment_method: str | dict[str, Any],
                       **fields: Any) -> Payment:
        return self._run(self._async.create_payment(amount, currency, payment_method, **fields))

    def capture(self, payment_id: str, amount_to_capture: int | None = None, **fields: Any) -> Payment:
        return self._run(self._async.capture(payment_id, amount_to_capture, **fields))

    def cancel(self, payment_id: str, cancellation_reason: str | None = None, **fields: Any) -> Payment:
        return self._run(self._async.cancel(payment_id, cancellation_reason, **fields))

    def refund(self, payment_id: str, amount: int | None = None, reason: str | None = None,
               **fields: Any) -> Refund:
        return self._run(self._async.refund(payment_id, amount, reason, **fields))

    def get_payment(self, payment_id: str) -> Payment:
        return self._run(self._async.get_payment(payment_id))

    def get_refund(self, refund_id: str) -> Refund:
        return self._run(self._async.get_refund(refund_id))

    def close(self) -> None:
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


async def _make(api_key: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(api_key, **options)

