"""The merchant TCP protocol against the real stack: hello, a payment's lifecycle, answers by request id on
a pipelined connection, the same idempotency keys as HTTP (a payment made over TCP replays over HTTP and
the other way round), and protocol violations that close their own connection only."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.httpclient import Client
from switch.dev.devstack import Stack
from switch.frontends.tcp import frames
from tests.integration.helpers import card, luhn_card

pytestmark = pytest.mark.integration


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, stack: Stack, api_key: str | None = None) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.switch_tcp_port)
        connection = cls(reader, writer)
        if api_key is not None:
            connection.send({"op": "hello", "v": 1, "api_key": api_key})
            hello = await connection.read()
            assert hello["op"] == "hello" and hello["merchant"].startswith("acct_"), hello
        return connection

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(frames.encode(message))

    async def read(self, timeout_s: float = 10.0) -> dict[str, Any]:
        header = await asyncio.wait_for(self.reader.readexactly(4), timeout_s)
        (length,) = struct.unpack(">I", header)
        return msgspec.msgpack.decode(await asyncio.wait_for(self.reader.readexactly(length), timeout_s))

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return await self.read()

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10.0) == b""

    async def close(self) -> None:
        self.writer.close()


def _payment(amount: int, capture_method: str = "manual") -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "capture_method": capture_method,
            "payment_method": card(luhn_card("4571"))}


async def test_a_payment_is_authorized_captured_refunded_and_read_over_tcp(stack: Stack) -> None:
    api_key = stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists")
    tcp = await Connection.open(stack, api_key)
    try:
        made = await tcp.call({"op": "payments.create", "id": 1, "idempotency_key": secrets.token_hex(8),
                               "body": _payment(2500)})
        assert (made["id"], made["status"], made["body"]["status"]) == (1, 200, "requires_capture"), made
        payment_id = made["body"]["id"]
        captured = await tcp.call({"op": "payments.capture", "id": 2, "idempotency_key": secrets.token_hex(8),
                                   "payment_id": payment_id, "body": {"amount_to_capture": 2000}})
        assert (captured["status"], captured["body"]["amount_received"]) == (200, 2000), captured
        refund = await tcp.call({"op": "refunds.create", "id": 3, "idempotency_key": secrets.token_hex(8),
                                 "body": {"payment": payment_id, "amount": 500}})
        assert (refund["status"], refund["body"]["status"]) == (200, "succeeded"), refund
        read = await tcp.call({"op": "payments.get", "id": 4, "payment_id": payment_id})
        assert read["body"]["amount_refunded"] == 500
        declined = await tcp.call({"op": "payments.create", "id": 5, "idempotency_key": secrets.token_hex(8),
                                   "body": {**_payment(700), "payment_method": card("4000000000000002")}})
        assert (declined["status"], declined["error"]["decline_code"]) == (402, "do_not_honor"), declined
        assert "4000000000000002" not in str(declined)
    finally:
        await tcp.close()


async def test_a_payment_made_over_tcp_replays_over_http_and_the_other_way_round(stack: Stack) -> None:
    api_key = stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists")
    tcp = await Connection.open(stack, api_key)
    http = Client(stack.switch_url, api_key)
    try:
        body, key = _payment(1234, "automatic"), secrets.token_hex(8)
        over_tcp = await tcp.call({"op": "payments.create", "id": 1, "idempotency_key": key, "body": body})
        assert over_tcp["status"] == 200 and over_tcp["replayed"] is False
        over_http = await http.request("POST", "/v1/payments", body, idempotency_key=key)
        assert over_http.status == 200 and over_http.headers.get("idempotent-replayed") == "true"
        assert over_http.json() == over_tcp["body"]
        changed = await http.request("POST", "/v1/payments", {**body, "amount": 1235}, idempotency_key=key)
        assert changed.status == 400 and changed.json()["error"]["code"] == "idempotency_key_reused"

        other, key2 = _payment(4321, "automatic"), secrets.token_hex(8)
        first = await http.request("POST", "/v1/payments", other, idempotency_key=key2)
        again = await tcp.call({"op": "payments.create", "id": 2, "idempotency_key": key2, "body": other})
        assert again["replayed"] is True and again["body"] == first.json()
    finally:
        await tcp.close()
        await http.close()


async def test_pipelined_requests_are_all_answered_once_by_their_id(stack: Stack) -> None:
    api_key = stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists")
    tcp = await Connection.open(stack, api_key)
    try:
        pings, creates = 10_000, 100
        batch = b"".join(frames.encode({"op": "ping", "id": i}) for i in range(pings))
        batch += b"".join(frames.encode({"op": "payments.create", "id": pings + i, "idempotency_key":
                                         secrets.token_hex(8), "body": _payment(100 + i, "automatic")})
                          for i in range(creates))
        tcp.writer.write(batch)
        answers = [await tcp.read(30.0) for _ in range(pings + creates)]
        assert sorted(a["id"] for a in answers) == list(range(pings + creates))
        assert {a["status"] for a in answers if a["id"] >= pings} == {200}
        assert len({a["body"]["id"] for a in answers if a["id"] >= pings}) == creates
    finally:
        await tcp.close()


@pytest.mark.parametrize("raw,code", [
    (struct.pack(">I", frames.FRAME_BYTES_MAX + 1), "frame_too_large"),
    (struct.pack(">I", 0), "frame_empty"),
    (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "frame_invalid"),
    (frames.encode([1, 2, 3]), "frame_invalid"),
    (struct.pack(">I", 60_005) + b"\x81\xa2op" + b"\x91" * 60_000 + b"\xc0", "frame_invalid"),   # too deep to decode
    (frames.encode({"op": "payments.get", "id": 1, "payment_id": "pay_0123456789"}), "hello_expected"),
    (frames.encode({"op": "hello", "v": 1, "api_key": "sk_test_wrong"}), "invalid_api_key"),
    (frames.encode({"op": "hello", "v": 99, "api_key": "x"}), "version_unsupported"),
])
async def test_a_protocol_violation_closes_its_connection_only(stack: Stack, raw: bytes, code: str) -> None:
    api_key = stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists") if code != "invalid_api_key" \
        else None
    bystander = await Connection.open(stack, api_key or stack.api_key)
    offender = await Connection.open(stack, api_key if code not in ("hello_expected", "version_unsupported",
                                                                     "invalid_api_key") else None)
    try:
        offender.writer.write(raw)
        answer = await offender.read()
        assert (answer["op"], answer["code"]) == ("error", code), answer
        assert await offender.closed()
        assert (await bystander.call({"op": "ping", "id": 7}))["op"] == "pong"
    finally:
        await offender.close()
        await bystander.close()


async def test_an_unknown_operation_or_a_bad_body_is_an_error_answer_and_the_connection_stays(stack: Stack) -> None:
    tcp = await Connection.open(stack, stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists"))
    try:
        unknown = await tcp.call({"op": "payments.teleport", "id": 1})
        assert (unknown["status"], unknown["error"]["code"]) == (400, "unknown_operation")
        bad = await tcp.call({"op": "payments.create", "id": 2, "idempotency_key": "k-1", "body": {"amount": "ten"}})
        assert (bad["status"], bad["error"]["code"], bad["error"]["param"]) == (400, "parameter_invalid", "amount")
        keyless = await tcp.call({"op": "payments.create", "id": 3, "body": _payment(100)})
        assert keyless["error"]["code"] == "idempotency_key_missing"
        listed = await tcp.call({"op": ["payments.create"], "id": 5})
        assert (listed["status"], listed["error"]["code"]) == (400, "unknown_operation"), listed
        nul = await tcp.call({"op": "payments.get", "id": 6, "payment_id": "pay_" + "\x00" * 10})  # Postgres: 22021
        assert (nul["status"], nul["error"]["code"], nul["error"]["param"]) == (400, "parameter_invalid", "payment_id")
        assert (await tcp.call({"op": "ping", "id": 4}))["op"] == "pong"
    finally:
        await tcp.close()


async def test_a_client_that_sends_without_reading_is_held_back_not_buffered(stack: Stack) -> None:
    """The switch stops reading a connection whose answers are not read: once its socket buffers are full,
    the client's writes block (the requests wait in the client, not in the switch's memory), while another
    connection is served as usual."""
    api_key = stack.seed_merchant(f"tcp-{secrets.token_hex(3)}", fraud_rules="lists")
    setup = await Connection.open(stack, api_key)
    made = await setup.call({"op": "payments.create", "id": 1, "idempotency_key": secrets.token_hex(8),
                             "body": _payment(990)})
    payment_id = made["body"]["id"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # its answers (~1 KiB each) pile up fast
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", stack.switch_tcp_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    hasty = Connection(reader, writer)
    hasty.send({"op": "hello", "v": 1, "api_key": api_key})
    assert (await hasty.read())["op"] == "hello"
    chunk = b"".join(frames.encode({"op": "payments.get", "id": i, "payment_id": payment_id}) for i in range(1000))
    sent, held = 0, False
    try:
        while sent < 400_000:
            hasty.writer.write(chunk)
            sent += 1000
            try:
                await asyncio.wait_for(hasty.writer.drain(), 3.0)
            except TimeoutError:
                held = True
                break
        assert held, f"{sent} requests went in without the switch holding the client back"
        assert (await setup.call({"op": "ping", "id": 2}))["op"] == "pong"   # others are served meanwhile
    finally:
        hasty.writer.transport.abort()
        await setup.close()


_OPS = ["ping", "payments.create", "payments.capture", "payments.cancel", "refunds.create", "payments.get",
        "refunds.get", "hello", "", "payments.teleport"]
_SCALARS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12), st.none(), st.booleans(),
                     st.binary(max_size=8))
_MESSAGES = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(_OPS), st.text(max_size=12)), "id": _SCALARS},
    optional={"body": st.dictionaries(st.text(max_size=10), _SCALARS, max_size=5), "payment_id": _SCALARS,
              "refund_id": _SCALARS, "idempotency_key": _SCALARS})
_PAYLOADS = st.lists(st.one_of(_MESSAGES.map(frames.encode), st.binary(max_size=40),
                               _MESSAGES.map(lambda m: frames.encode(m)[:-1])), min_size=1, max_size=6)


def _one_frame(sock: socket.socket) -> dict[str, Any]:
    sock.settimeout(10)
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    length, body = int.from_bytes(header, "big"), b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return msgspec.msgpack.decode(body)  # type: ignore[no-any-return]


def _frames_until_quiet(sock: socket.socket) -> list[dict[str, Any]]:
    """What the switch answers before it goes quiet for 0.3 s or closes the connection."""
    sock.settimeout(0.3)
    data, got = b"", []
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    while len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
        length = int.from_bytes(data[:4], "big")
        got.append(msgspec.msgpack.decode(data[4:4 + length]))
        data = data[4 + length:]
    return got


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=_PAYLOADS)
def test_fuzzed_frames_get_answers_or_a_clean_close_and_the_switch_keeps_serving(stack: Stack,
                                                                                  payload: list[bytes]) -> None:
    def opened() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", stack.switch_tcp_port), timeout=5)
        sock.sendall(frames.encode({"op": "hello", "v": 1, "api_key": stack.api_key}))
        assert _one_frame(sock)["op"] == "hello"
        return sock

    fuzzed = opened()
    try:
        fuzzed.sendall(b"".join(payload))
        for answer in _frames_until_quiet(fuzzed):
            assert "id" in answer or (answer["op"] == "error" and answer["code"]), answer
    finally:
        fuzzed.close()
    bystander = opened()
    try:
        bystander.sendall(frames.encode({"op": "ping", "id": 1}))
        assert _one_frame(bystander) == {"id": 1, "op": "pong"}
    finally:
        bystander.close()
