"""A worker stopped by SIGTERM (a deploy) finishes the payments it took on before it closes its links and
pools (switch.common.drain): they are answered, approved, with no reversal; idle connections close at once."""

from __future__ import annotations

import asyncio
import secrets
import signal
import struct
from typing import Any

import msgspec
import pytest

from loadtest.httpclient import Client, Connection
from switch.dev.devstack import free_port
from switch.frontends.tcp import frames
from tests.conftest import simulator
from tests.integration.helpers import key, payment
from tests.integration.solo import SoloStack, eventually

pytestmark = pytest.mark.integration

NETWORK_LATENCY_MS = 1200           # the payments are waiting for this when the worker is told to stop
BUDGET_ENV = {"SWITCH_PAYMENT_BUDGET_S": "3.0", "SWITCH_NETWORK_TIMEOUT_S": "2.5"}


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (length,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 10.0))
    return msgspec.msgpack.decode(await asyncio.wait_for(reader.readexactly(length), 10.0))


def raw_request(path: str, api_key: str, body: bytes = b"", method: str = "GET", idempotency_key: str = "") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "host: switch", f"authorization: Bearer {api_key}",
            f"content-length: {len(body)}", "content-type: application/json"]
    if idempotency_key:
        head.append(f"idempotency-key: {idempotency_key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_all(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while chunk := await asyncio.wait_for(reader.read(65536), 10.0):
        chunks.append(chunk)
    return b"".join(chunks)


async def _stopping(ops_url: str) -> bool:
    """Whether /readyz says 503 "stopping" within 5 s of the signal (a busy machine may be slow to deliver
    and handle it)."""
    client = Client(ops_url)

    async def says_stopping() -> bool:
        try:
            ready = await client.request("GET", "/readyz")
        except OSError:                                 # not answering yet (or any more): ask again
            return False
        return (ready.status, ready.json()["status"]) == (503, "stopping")

    try:
        return bool(await eventually(says_stopping, 5.0, interval_s=0.02))
    finally:
        await client.close()


async def test_payments_in_flight_at_sigterm_are_answered_before_the_worker_stops(solo_stack: SoloStack) -> None:
    solo = solo_stack
    tcp_port = free_port()
    switch = solo.start_switch("drain", env={**BUDGET_ENV, "SWITCH_TCP_PORT": str(tcp_port)})
    host, port = switch.url.removeprefix("http://").split(":")
    idle, busy = Connection(host, int(port)), Connection(host, int(port))
    headers = {"authorization": f"Bearer {solo.api_key}"}
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    piped_reader, piped = await asyncio.open_connection(host, int(port))
    db = await solo.pool()
    try:
        assert (await idle.request("GET", "/v1/payments?limit=1", headers=headers)).status == 200
        writer.write(frames.encode({"op": "hello", "v": 1, "api_key": solo.api_key}))
        assert (await read_frame(reader))["op"] == "hello"
        simulator(solo.stack, "/behaviour", {"network": "visa", "latency_ms": NETWORK_LATENCY_MS})
        over_http = asyncio.ensure_future(busy.request(
            "POST", "/v1/payments", body=payment(capture_method="automatic"),
            headers={**headers, "idempotency-key": key()}))
        writer.write(frames.encode({"op": "payments.create", "id": 1, "idempotency_key": secrets.token_hex(8),
                                    "body": payment(2500)}))
        piped.write(raw_request("/v1/payments", solo.api_key, msgspec.json.encode(payment(3000)), "POST", key()))
        await asyncio.sleep(0.25)                           # all sent, all waiting for the network
        switch.service.process.send_signal(signal.SIGTERM)
        assert await _stopping(switch.ops_url)              # as soon as the signal is handled, within 5 s
        piped.write(raw_request("/v1/payments?limit=1", solo.api_key))    # after the stop: not read

        answer = await over_http
        assert (answer.status, answer.json()["status"]) == (200, "succeeded"), answer.json()
        assert answer.headers.get("connection") == "close"  # its connection's last answer
        over_tcp = await read_frame(reader)
        assert (over_tcp["id"], over_tcp["status"], over_tcp["body"]["status"]) == (1, 200, "requires_capture")
        goodbye = await read_frame(reader)
        assert (goodbye["op"], goodbye["code"]) == ("error", "shutting_down")
        assert await asyncio.wait_for(reader.read(1), 5.0) == b""
        assert not idle.is_open                             # closed at the stop, nothing ran on it
        piped_answers = await read_all(piped_reader)        # the payment's answer, the end, nothing more
        assert piped_answers.startswith(b"HTTP/1.1 200 ") and piped_answers.count(b"HTTP/1.1") == 1
        assert b"connection: close" in piped_answers and b'"status":"requires_capture"' in piped_answers
        assert await asyncio.to_thread(switch.service.process.wait, 20) == 0

        ids = [answer.json()["id"], over_tcp["body"]["id"]]
        statuses = dict(await db.fetch("SELECT id, status FROM payments WHERE id = ANY ($1)", ids))
        assert statuses == {ids[0]: "succeeded", ids[1]: "requires_capture"}
        reversals = await db.fetchval("SELECT count(*) FROM network_outbox WHERE payment_id = ANY ($1) "
                                      "AND kind LIKE 'reversal%'", ids)
        assert reversals == 0
    finally:
        simulator(solo.stack, "/behaviour", {"network": "visa", "latency_ms": 0})
        writer.close()
        piped.close()
        await idle.close()
        await busy.close()
        await db.close()
        solo.stop_switch(switch)
