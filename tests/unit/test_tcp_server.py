"""The merchant protocol's connection and operations, without the stack: a fake transport, key cache,
limiter and payments. The hello deadline holds however the bytes trickle in, a frame too deep to decode
closes its connection cleanly, and an op or id of the wrong shape is a 400 that never reaches the store."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, cast

import pytest

from switch.frontends.tcp import frames, server
from switch.frontends.tcp.server import MerchantProtocol, Operations
from switch.idempotency.ratelimit import Buckets, RateLimiter
from switch.merchants import ApiKeyCache, Merchant
from switch.payments.commands import Caller, GetPayment, GetRefund, Mutation
from switch.payments.engine import Payments
from switch.payments.outcome import Outcome
from switch.payments.results import Result

MERCHANT = Merchant("acct_0123456789", "Test")
PAYMENT_ID = "pay_0123456789ABCDEFGHIJKL"


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def sent(self) -> list[dict[str, Any]]:
        return frames.Reader().feed(bytes(self.written))


class Keys:
    async def merchant_for_digest(self, digest: bytes) -> Merchant | None:
        return MERCHANT


class Limiter(RateLimiter):
    """No buckets to take from: every request is admitted without Redis."""

    def __init__(self) -> None:
        self.leases = {}

    def buckets(self, key_digest: bytes | None, address: str, key_per_s: int | None = None,
                key_burst: int | None = None) -> Buckets:
        return Buckets([], [])


class Store:
    """Payments that hold nothing and record what reached them: a refused request must not."""

    def __init__(self) -> None:
        self.reached: list[object] = []

    async def execute(self, caller: Caller, command: Mutation) -> tuple[Outcome, bool]:
        self.reached.append(command)
        return Outcome(Result.RESOURCE_MISSING, caller.request_id), False

    async def get_payment(self, caller: Caller, command: GetPayment) -> Outcome:
        self.reached.append(command)
        return Outcome(Result.RESOURCE_MISSING, caller.request_id)

    async def get_refund(self, caller: Caller, command: GetRefund) -> Outcome:
        self.reached.append(command)
        return Outcome(Result.RESOURCE_MISSING, caller.request_id)


def _operations(store: Store | None = None) -> Operations:
    return Operations(cast(Payments, store or Store()), cast(ApiKeyCache, Keys()),
                      lambda method, path, body: b"fingerprint", Limiter())


def _connected() -> tuple[MerchantProtocol, Transport]:
    protocol, transport = MerchantProtocol(_operations()), Transport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    return protocol, transport


async def _closed(transport: Transport, within_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not transport.closed and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return transport.closed


async def test_bytes_trickled_before_the_hello_do_not_put_off_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "HELLO_TIMEOUT_S", 0.2)
    monkeypatch.setattr(server, "IDLE_TIMEOUT_S", 30.0)
    protocol, transport = _connected()
    trickle = struct.pack(">I", 1000) + b"\x80" * 100          # a frame that never ends, a byte at a time
    loop = asyncio.get_running_loop()
    started = loop.time()
    for byte in trickle:
        if transport.closed or loop.time() - started > 1.0:
            break
        protocol.data_received(bytes([byte]))
        await asyncio.sleep(0.02)
    assert transport.closed, "a client that never said hello was kept past the hello deadline"
    assert transport.sent()[-1]["code"] == "hello_timeout"
    protocol.connection_lost(None)


async def test_after_the_hello_the_idle_timeout_takes_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "HELLO_TIMEOUT_S", 0.1)
    monkeypatch.setattr(server, "IDLE_TIMEOUT_S", 1.0)
    protocol, transport = _connected()
    protocol.data_received(frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_abc"}))
    await asyncio.sleep(0.3)                                   # past the hello deadline, within the idle one
    assert not transport.closed and transport.sent()[0]["op"] == "hello"
    assert await _closed(transport, 3.0)
    assert transport.sent()[-1]["code"] == "idle_timeout"
    protocol.connection_lost(None)


async def test_a_frame_nested_too_deep_to_decode_closes_its_connection_cleanly() -> None:
    protocol, transport = _connected()
    payload = b"\x81\xa2op" + b"\x91" * 60_000 + b"\xc0"      # {"op": [[[...]]]}, within the frame bound
    protocol.data_received(struct.pack(">I", len(payload)) + payload)
    assert transport.closed
    assert transport.sent() == [{"op": "error", "code": "frame_invalid", "message": "A frame is one msgpack map."}]
    protocol.connection_lost(None)


@pytest.mark.parametrize("op", [["payments.create"], {}, {"payments.get": 1}])
async def test_an_op_that_is_not_a_string_is_an_unknown_operation(op: object,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    with caplog.at_level(logging.INFO, logger=server.__name__):
        answer = await _operations(store).run(MERCHANT, b"digest", "127.0.0.1", {"op": op, "id": 1})
    assert (answer["id"], answer["status"], answer["error"]["code"]) == (1, 400, "unknown_operation"), answer
    assert answer["error"]["param"] == "op"
    assert not caplog.records and not store.reached


@pytest.mark.parametrize("message", [
    {"op": "payments.get", "payment_id": "pay_" + "\x00" * 10},
    {"op": "refunds.get", "refund_id": "re_" + "\x00" * 10},
    {"op": "payments.get", "payment_id": "pay_0123456789\n"},
    {"op": "payments.get", "payment_id": "pay_0123456789; --"},
    {"op": "payments.capture", "idempotency_key": "k-1", "payment_id": "pay_" + "\x00" * 10, "body": {}},
    {"op": "payments.cancel", "idempotency_key": "k-2", "payment_id": "pay_0123456789\x00", "body": {}},
])
async def test_an_id_that_is_not_an_object_id_is_refused_before_the_store(message: dict[str, Any]) -> None:
    store = Store()
    answer = await _operations(store).run(MERCHANT, b"digest", "127.0.0.1", {**message, "id": 1})
    assert not store.reached, "an id Postgres may refuse reached the store"
    name = "payment_id" if "payment_id" in message else "refund_id"
    assert (answer["status"], answer["error"]["code"], answer["error"]["param"]) == (400, "parameter_invalid", name)


async def test_a_missing_id_is_still_a_missing_parameter() -> None:
    answer = await _operations().run(MERCHANT, b"digest", "127.0.0.1", {"op": "payments.get", "id": 1})
    assert (answer["status"], answer["error"]["code"]) == (400, "parameter_missing")


async def test_an_object_id_reaches_the_store() -> None:
    store = Store()
    answer = await _operations(store).run(MERCHANT, b"digest", "127.0.0.1",
                                          {"op": "payments.get", "id": 1, "payment_id": PAYMENT_ID})
    assert (answer["status"], answer["error"]["code"]) == (404, "resource_missing")
    assert store.reached == [GetPayment(PAYMENT_ID)]


class SlowKeys(Keys):
    async def merchant_for_digest(self, digest: bytes) -> Merchant | None:
        await asyncio.sleep(0.3)                                   # a key lookup that went to Postgres
        return MERCHANT


async def test_a_hello_in_time_is_not_cut_off_by_its_key_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "HELLO_TIMEOUT_S", 0.1)
    monkeypatch.setattr(server, "IDLE_TIMEOUT_S", 30.0)
    operations = Operations(cast(Payments, Store()), cast(ApiKeyCache, SlowKeys()),
                            lambda method, path, body: b"fingerprint", Limiter())
    protocol, transport = MerchantProtocol(operations), Transport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    protocol.data_received(frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_abc"}))
    await asyncio.sleep(0.5)
    assert not transport.closed and transport.sent()[0]["op"] == "hello", transport.sent()
    protocol.connection_lost(None)


@pytest.mark.parametrize("rid", ["7", [1], {"a": 1}, True, None])
async def test_a_request_id_that_is_not_an_integer_closes_the_connection(rid: object) -> None:
    protocol, transport = _connected()
    protocol.data_received(frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_abc"}))
    await asyncio.sleep(0.05)
    protocol.data_received(frames.encode({"op": "payments.get", "id": rid, "payment_id": PAYMENT_ID}))
    assert transport.closed and transport.sent()[-1]["code"] == "id_invalid", transport.sent()
    protocol.connection_lost(None)


async def test_a_ping_with_an_id_that_is_not_an_integer_is_refused_not_echoed() -> None:
    """A ping's id is echoed back, and one nested deep enough (about 990 levels) cannot be encoded again."""
    protocol, transport = _connected()
    protocol.data_received(frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_abc"}))
    await asyncio.sleep(0.05)
    protocol.data_received(frames.encode({"op": "ping", "id": [[1]]}))
    assert transport.closed and transport.sent()[-1]["code"] == "id_invalid", transport.sent()[-1]
    pinging, quiet = _connected()
    pinging.data_received(frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_abc"}))
    await asyncio.sleep(0.05)
    pinging.data_received(frames.encode({"op": "ping"}))            # a ping may have no id
    await asyncio.sleep(0.05)
    assert not quiet.closed and quiet.sent()[-1]["op"] == "pong"
    protocol.connection_lost(None)
    pinging.connection_lost(None)
