"""The merchant TCP protocol (docs/merchant-protocol.md): persistent connections, many requests in flight
on each, answers in any order by request id. The same commands, idempotency keys, rate limits and outcomes
as the HTTP API: a request's fingerprint is its command's, so a payment made over TCP replays over HTTP
and the other way round.

Bounds: a frame is at most 64 KiB; at most IN_FLIGHT_MAX requests run per connection (past that the
switch stops reading the connection until one ends, and it stops reading too while the client does not
read its answers); a connection says hello within HELLO_TIMEOUT_S and sends something (a ping will do)
every IDLE_TIMEOUT_S. A protocol violation closes that connection only, after an error frame.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec

from switch.common import errors
from switch.common.drain import Drain, close_gently
from switch.common.ids import OBJECT_ID
from switch.common.validation import error_message, error_param
from switch.frontends.http import render, schema
from switch.frontends.http.app import new_request_id
from switch.frontends.tcp import frames
from switch.frontends.tcp.frames import FrameError
from switch.idempotency.ratelimit import RateLimiter
from switch.merchants import ApiKeyCache, Merchant, hash_key
from switch.payments.commands import Authorize, Caller, GetPayment, GetRefund, Mutation, Refund
from switch.payments.engine import Payments
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.store import pool as store_pool

log = logging.getLogger(__name__)

IN_FLIGHT_MAX = 128
_KEYS_UNAVAILABLE: tuple[type[BaseException], ...] = (*store_pool.UNAVAILABLE, OSError)
HELLO_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 90.0
_OBJECT_ID = re.compile(OBJECT_ID)
Fingerprint = Callable[[str, str, bytes], bytes]


class Operations:
    """What a connection's requests run: built like the HTTP API's, answered as msgpack maps."""

    def __init__(self, payments: Payments, api_keys: ApiKeyCache, fingerprint: Fingerprint,
                 limiter: RateLimiter) -> None:
        self.payments = payments
        self.api_keys = api_keys
        self.fingerprint = fingerprint
        self.limiter = limiter

    async def hello(self, message: dict[str, Any]) -> tuple[Merchant, bytes]:
        if message.get("op") != "hello":
            raise FrameError("hello_expected", "The first frame is {\"op\": \"hello\", \"v\": 1, \"api_key\": ...}.")
        if message.get("v") != frames.VERSION:
            raise FrameError("version_unsupported", f"This switch speaks version {frames.VERSION} of the protocol.")
        api_key = message.get("api_key")
        digest = hash_key(api_key) if isinstance(api_key, str) and 0 < len(api_key) <= 200 else b""
        merchant = await self.api_keys.merchant_for_digest(digest) if digest else None
        if merchant is None:
            raise FrameError("invalid_api_key", "Invalid API key provided.")
        return merchant, digest

    async def run(self, merchant: Merchant, digest: bytes, remote: str, message: dict[str, Any]) -> dict[str, Any]:
        request_id = new_request_id()
        rid = message.get("id")
        try:
            return await self._run(merchant, digest, remote, message, request_id)
        except errors.ApiError as error:
            return _error(rid, error, request_id)
        except store_pool.UNAVAILABLE as error:
            store_pool.POSTGRES.failed(error)
            return _answer(rid, Outcome(Result.DATABASE_UNAVAILABLE, request_id), False)
        except Exception as error:  # noqa: BLE001 - answered, logged with its id, never with its message
            op = message.get("op")              # named only if it is one of ours: the client's text is not logged
            log.error("500 %s on tcp %s: %s", request_id, op if op in OPERATIONS else "?", error.__class__.__name__)
            return _error(rid, errors.ApiError(500, "api_error", "internal_error", "An internal error occurred; "
                                               "retry with the same idempotency key."), request_id)

    async def _run(self, merchant: Merchant, digest: bytes, remote: str, message: dict[str, Any],
                   request_id: str) -> dict[str, Any]:
        op, rid = message.get("op"), message.get("id")
        if not isinstance(op, str):         # a list or a map is not hashable: `op in _MUTATIONS` would raise
            raise errors.invalid_request("unknown_operation", "The op is a string naming an operation.", "op")
        if op == "ping":
            return {"id": rid, "op": "pong"}
        buckets = self.limiter.buckets(digest, remote, merchant.rate_limit_per_s, merchant.rate_limit_burst)
        try:
            if op in _MUTATIONS:
                path, command = _MUTATIONS[op](message)
                key = _idempotency_key(message)
                caller = Caller(merchant, request_id, key,
                                self.fingerprint("POST", path, schema.canonical(command)), buckets)
                outcome, replayed = await self.payments.execute(caller, command)
                return _answer(rid, outcome, replayed)
            read = _READS.get(op)
            if read is None:
                raise errors.invalid_request("unknown_operation", f"Unknown operation {op[:40]!r}.", "op")
            if wait_ms := await self.limiter.admit(buckets).wait_ms():
                return _answer(rid, Outcome(Result.RATE_LIMITED, request_id, retry_after_ms=wait_ms), False)
            return _answer(rid, await read(self.payments, Caller(merchant, request_id), _target(message)), False)
        finally:
            buckets.release()


def _body(message: dict[str, Any], kind: type[Any]) -> Any:
    body = message.get("body", {})
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as error:
        raise errors.invalid_request("parameter_invalid", error_message(error), error_param(error)) from None


def _id_ok(message: dict[str, Any]) -> bool:
    """An integer id (bool is not one); a ping may have none. Anything else would be echoed back, and a value
    nested deep enough cannot be encoded again."""
    rid = message.get("id")
    if rid is None:
        return message.get("op") == "ping"
    return type(rid) is int


def _target(message: dict[str, Any]) -> str:
    """The payment_id (or refund_id), shaped as the HTTP routes take ids: other text would reach the store, and
    text Postgres refuses (a NUL) is a 500, or in a capture or cancel may fail the group-committed batch it joins."""
    name = "payment_id" if message.get("payment_id") else "refund_id"
    target = message.get(name)
    if not target:
        raise errors.invalid_request("parameter_missing", "The operation needs payment_id (or refund_id).",
                                     "payment_id")
    if not isinstance(target, str) or not _OBJECT_ID.fullmatch(target):
        raise errors.invalid_request("parameter_invalid", f"The {name} is not an id (such as pay_...).", name)
    return target


def _idempotency_key(message: dict[str, Any]) -> str:
    key = message.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        raise errors.invalid_request("idempotency_key_missing", "Every mutating operation needs an "
                                     "idempotency_key.", "idempotency_key")
    return schema.checked_idempotency_key(key.strip(), "idempotency_key")


def _create(message: dict[str, Any]) -> tuple[str, Mutation]:
    return "/v1/payments", _body(message, Authorize)


def _capture(message: dict[str, Any]) -> tuple[str, Mutation]:
    payment_id = _target(message)
    request = _body(message, schema.CaptureBody)
    return f"/v1/payments/{payment_id}/capture", schema.capture_command(payment_id, request)


def _cancel(message: dict[str, Any]) -> tuple[str, Mutation]:
    payment_id = _target(message)
    request = _body(message, schema.CancelBody)
    return f"/v1/payments/{payment_id}/cancel", schema.cancel_command(payment_id, request)


def _refund(message: dict[str, Any]) -> tuple[str, Mutation]:
    return "/v1/refunds", _body(message, Refund)


async def _get_payment(payments: Payments, caller: Caller, target: str) -> Outcome:
    return await payments.get_payment(caller, GetPayment(target))


async def _get_refund(payments: Payments, caller: Caller, target: str) -> Outcome:
    return await payments.get_refund(caller, GetRefund(target))


_MUTATIONS: dict[str, Callable[[dict[str, Any]], tuple[str, Mutation]]] = {
    "payments.create": _create, "payments.capture": _capture, "payments.cancel": _cancel, "refunds.create": _refund}
_READS: dict[str, Callable[[Payments, Caller, str], Awaitable[Outcome]]] = {
    "payments.get": _get_payment, "refunds.get": _get_refund}
OPERATIONS = ("ping", *_MUTATIONS, *_READS)


def _answer(rid: object, outcome: Outcome, replayed: bool) -> dict[str, Any]:
    """The outcome as the HTTP API answers it: the same status and the same object, as msgpack."""
    answered = render.answer_object(outcome)
    if not isinstance(answered, errors.ApiError):
        return {"id": rid, "status": 200, "body": answered, "replayed": replayed}
    answer = _error(rid, answered, outcome.request_id)
    if outcome.retry_after_ms:
        answer["retry_after_ms"] = outcome.retry_after_ms
    answer["replayed"] = replayed
    return answer


def _error(rid: object, error: errors.ApiError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": error.type, "code": error.code, "decline_code": error.decline_code,
                            "message": error.message, "param": error.param, "request_id": request_id}
    if error.payment_id:
        body["payment_id"] = error.payment_id
    return {"id": rid, "status": error.status, "error": body}


class MerchantProtocol(asyncio.Protocol):
    """One merchant connection: hello, then requests run side by side, answered as they finish."""

    def __init__(self, operations: Operations, drain: Drain | None = None) -> None:
        self.operations = operations
        self.drain = drain                  # the worker's, when it stops: see switch.common.drain
        self.reader = frames.Reader()
        self.transport: asyncio.Transport | None = None
        self.merchant: Merchant | None = None
        self.digest = b""
        self.remote = ""
        self.hello_pending = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.waiting: deque[dict[str, Any]] = deque()     # read in the same chunk past IN_FLIGHT_MAX
        self.reading = True
        self.writable = True
        self.idle: asyncio.TimerHandle | None = None
        self.said_goodbye = False           # the worker is stopping and this connection has been closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)      # uvloop's is not an asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else ""
        self._arm(HELLO_TIMEOUT_S, "hello_timeout", "No hello came in time.")
        if self.drain is not None:
            self.drain.connections.add(self)
            if self.drain.stopping:                 # accepted just before the port closed
                self.close_when_idle()

    def data_received(self, data: bytes) -> None:
        if self.said_goodbye:
            return                          # read and dropped until the client closes (drain.close_gently)
        if self.merchant is not None:       # not before: bytes trickled in would put off the hello's deadline
            self._arm_idle()
        try:
            messages = self.reader.feed(data)
        except FrameError as error:
            self._close_with(error.code, error.message)
            return
        for message in messages:
            if self.transport is None or self.transport.is_closing():
                return
            if self.merchant is None:
                self._hello(message)
            elif not _id_ok(message):
                self._close_with("id_invalid", "Every request has an integer id.")
                return
            else:
                self._start(message)

    def _hello(self, message: dict[str, Any]) -> None:
        if self.hello_pending:
            self._close_with("hello_pending", "Requests come after the hello's answer.")
            return
        self.hello_pending = True
        self._arm_idle()            # the hello came in time: its key lookup is bounded as a request would be
        task = asyncio.get_running_loop().create_task(self._greet(message))
        self._began()
        self.tasks.add(task)
        task.add_done_callback(self._greeted)

    async def _greet(self, message: dict[str, Any]) -> None:
        try:
            self.merchant, self.digest = await self.operations.hello(message)
        except FrameError as error:
            self._close_with(error.code, error.message)
            return
        except _KEYS_UNAVAILABLE:
            self._close_with("unavailable", "The switch cannot check keys now; connect again.")
            return
        self._send({"op": "hello", "v": frames.VERSION, "merchant": self.merchant.id, "in_flight_max": IN_FLIGHT_MAX,
                    "frame_bytes_max": frames.FRAME_BYTES_MAX, "idle_timeout_s": IDLE_TIMEOUT_S,
                    "operations": list(OPERATIONS)})

    def _start(self, message: dict[str, Any]) -> None:
        """Run the request, or keep it until one in flight ends (reading stops meanwhile)."""
        assert self.merchant is not None
        if len(self.tasks) >= IN_FLIGHT_MAX:
            self.waiting.append(message)
        else:
            task = asyncio.get_running_loop().create_task(self._serve(self.merchant, message))
            self._began()
            self.tasks.add(task)
            task.add_done_callback(self._finished)
        self._flow()

    async def _serve(self, merchant: Merchant, message: dict[str, Any]) -> None:
        self._send(await self.operations.run(merchant, self.digest, self.remote, message))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.waiting and self.transport is not None:
            self._start(self.waiting.popleft())
        else:
            self._flow()
        self._ended()

    def _greeted(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._ended()

    def _began(self) -> None:
        if self.drain is not None:
            self.drain.began()

    def _ended(self) -> None:
        """A task ended; a stopping worker closes the connection once nothing runs on it."""
        if self.drain is None:
            return
        if self.drain.stopping and not self.tasks and not self.waiting:
            self._goodbye()
        self.drain.ended()

    def close_when_idle(self) -> None:
        """The worker is stopping: read no more requests, and close once those taken on are answered."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.reading:
            self.transport.pause_reading()
            self.reading = False
        if not self.tasks and not self.waiting:
            self._goodbye()

    def _goodbye(self) -> None:
        """The last frame of a stopping worker's connection, after its answers; then a gentle close."""
        if self.said_goodbye or self.transport is None or self.transport.is_closing():
            return
        self.said_goodbye = True
        if self.idle is not None:
            self.idle.cancel()
        self._send({"op": "error", "code": "shutting_down", "message": "The switch is stopping: connect again."})
        close_gently(self.transport)

    def _flow(self) -> None:
        """Read while fewer than IN_FLIGHT_MAX requests run and the client reads its answers."""
        if self.transport is None or self.transport.is_closing():
            return
        stopping = self.drain is not None and self.drain.stopping
        want = len(self.tasks) < IN_FLIGHT_MAX and not self.waiting and self.writable and not stopping
        if want and not self.reading:
            self.transport.resume_reading()
        elif not want and self.reading:
            self.transport.pause_reading()
        self.reading = want

    def pause_writing(self) -> None:
        self.writable = False
        self._flow()

    def resume_writing(self) -> None:
        self.writable = True
        self._flow()

    def _send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames.encode(message))

    def _close_with(self, code: str, message: str) -> None:
        self._send({"op": "error", "code": code, "message": message})
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        self._arm(IDLE_TIMEOUT_S, "idle_timeout", "The connection was idle too long (send a ping).")

    def _arm(self, after_s: float, code: str, message: str) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(after_s, self._close_with, code, message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None
        if self.drain is not None:
            self.drain.connections.discard(self)
        for task in list(self.tasks):
            if not task.done() and self.merchant is None:
                task.cancel()            # a hello in progress; requests finish (their outcome is kept)


async def serve(operations: Operations, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                backlog: int = 2048, drain: Drain | None = None) -> asyncio.Server:
    """Listen with SO_REUSEPORT, as the HTTP port does, so every worker serves the port. With `drain`, the
    worker's stop finishes the requests taken on and then closes (switch.common.drain)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: MerchantProtocol(operations, drain), host, port, backlog=backlog,
                                    reuse_port=True, ssl=tls)
