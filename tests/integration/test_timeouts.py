"""No answer in time is not a decline: 504 `network_timeout`, the payment failed, its authorization
reversed (0400, then 0421 repeats until acknowledged), and a late approval never recorded as approved. An
advice the network answers without acting on it (96) is sent again until it is acted on. On the dedicated
stack, whose switch has short timeouts and outbox intervals (tests/integration/solo.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from loadtest.httpclient import Client
from tests.conftest import simulator
from tests.integration.helpers import MASTERCARD_OK, VISA_OK, key, payment
from tests.integration.solo import SoloStack, eventually

pytestmark = pytest.mark.integration

WAIT_S = 20.0


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def switch_client(solo_stack: SoloStack) -> AsyncIterator[Client]:
    switch = solo_stack.start_switch("switch-timeouts")
    client = solo_stack.client(switch)
    client.ops_url = switch.ops_url         # type: ignore[attr-defined]  # where its /metrics is
    try:
        yield client
    finally:
        await client.close()
        solo_stack.stop_switch(switch)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def solo_db(solo_stack: SoloStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await solo_stack.pool()
    yield pool
    await pool.close()


def records(solo: SoloStack, rrn: str) -> list[dict[str, Any]]:
    return list(simulator(solo.stack, f"/records?rrn={rrn}")["records"])


async def timed_out_payment(client: Client, db: asyncpg.Pool, number: str) -> tuple[str, str]:
    response = await client.request("POST", "/v1/payments", payment(4100, number), idempotency_key=key("timeout"))
    assert response.status == 504, response.body
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "network_timeout")
    row = await db.fetchrow("SELECT status, failure_message, rrn FROM payments WHERE id = $1", error["payment_id"])
    assert (row["status"], row["failure_message"]) == ("failed", "network_timeout")
    return error["payment_id"], row["rrn"]


async def assert_reversed_and_never_approved(solo: SoloStack, db: asyncpg.Pool, payment_id: str, rrn: str) -> None:
    async def acknowledged() -> bool:
        return bool(await db.fetchval("SELECT acknowledged_at IS NOT NULL FROM network_outbox "
                                      "WHERE payment_id = $1 AND kind = 'reversal'", payment_id))

    assert await eventually(acknowledged, WAIT_S), "the reversal was never acknowledged"
    events = [row["type"] for row in await db.fetch(
        "SELECT type FROM payment_events WHERE payment_id = $1 ORDER BY id", payment_id)]
    assert events == ["payment.created", "authorization.timed_out"]
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", payment_id) == "failed"
    summary = simulator(solo.stack, f"/summary?rrn={rrn}")
    assert summary["charged_once"] and summary["every_hold_resolved"], summary
    assert summary["by_rrn"][rrn]["charges"] == 0 and summary["by_rrn"][rrn]["held_minor"] == 0


async def test_approved_but_never_answered_is_reversed_until_acknowledged(
        solo_stack: SoloStack, switch_client: Client, solo_db: asyncpg.Pool) -> None:
    simulator(solo_stack.stack, "/behaviour", {"network": "visa", "drop_rate": 1.0})
    try:
        payment_id, rrn = await timed_out_payment(switch_client, solo_db, VISA_OK)
        # The simulator applies and drops the reversal too: the outbox repeats it as 0421.
        async def repeated() -> bool:
            return {"0400", "0421"} <= {record["mti"] for record in records(solo_stack, rrn)}

        assert await eventually(repeated, WAIT_S), records(solo_stack, rrn)
        assert await solo_db.fetchval("SELECT acknowledged_at FROM network_outbox WHERE payment_id = $1",
                                      payment_id) is None
    finally:
        simulator(solo_stack.stack, "/behaviour", {"network": "visa", "drop_rate": 0.0})
    await assert_reversed_and_never_approved(solo_stack, solo_db, payment_id, rrn)
    first = next(record for record in records(solo_stack, rrn) if record["mti"] == "0100")
    assert (first["field39"], first["effect"]) == ("00", "hold")      # the issuer did approve it


async def test_a_late_approval_is_never_recorded_as_approved(
        solo_stack: SoloStack, switch_client: Client, solo_db: asyncpg.Pool) -> None:
    late_ms = 1500      # beyond the switch's 0.8 s network timeout and 1.0 s budget
    simulator(solo_stack.stack, "/behaviour", {"network": "mastercard", "late_answer_rate": 1.0,
                                               "late_answer_ms": late_ms})
    try:
        payment_id, rrn = await timed_out_payment(switch_client, solo_db, MASTERCARD_OK)

        async def late_approval_arrived() -> bool:
            ops = Client(switch_client.ops_url, "")  # type: ignore[attr-defined]
            try:
                metrics = (await ops.request("GET", "/metrics")).body.decode()
            finally:
                await ops.close()
            return any(line.startswith("switch_network_late_responses_total") and 'mti="0110"' in line
                       and 'network="mastercard"' in line for line in metrics.splitlines())

        assert await eventually(late_approval_arrived, WAIT_S)
    finally:
        simulator(solo_stack.stack, "/behaviour", {"network": "mastercard", "late_answer_rate": 0.0})
    await assert_reversed_and_never_approved(solo_stack, solo_db, payment_id, rrn)
    after = await switch_client.request("POST", "/v1/payments", payment(4100, MASTERCARD_OK),
                                         idempotency_key=key("other"))
    assert after.status == 200, after.body     # the network is healthy again
    assert (await switch_client.request("POST", f"/v1/payments/{after.json()['id']}/cancel", {},
                                        idempotency_key=key())).status == 200


async def test_a_capture_advice_the_network_did_not_act_on_is_sent_again(
        solo_stack: SoloStack, switch_client: Client, solo_db: asyncpg.Pool) -> None:
    authorized = await switch_client.request("POST", "/v1/payments", payment(4100, VISA_OK), idempotency_key=key())
    assert authorized.status == 200, authorized.body
    payment_id = authorized.json()["id"]
    rrn = await solo_db.fetchval("SELECT rrn FROM payments WHERE id = $1", payment_id)
    simulator(solo_stack.stack, "/behaviour", {"network": "visa", "error_rate": 1.0, "error_code": "96"})
    try:
        captured = await switch_client.request("POST", f"/v1/payments/{payment_id}/capture", {},
                                               idempotency_key=key())
        assert captured.status == 200, captured.body

        async def refused_twice() -> bool:       # the records come newest first
            advices = [(r["mti"], r["field39"]) for r in reversed(records(solo_stack, rrn))
                       if r["mti"] in ("0220", "0221")]
            return advices[:2] == [("0220", "96"), ("0221", "96")]

        assert await eventually(refused_twice, WAIT_S), records(solo_stack, rrn)
        waiting = await solo_db.fetchrow("SELECT acknowledged_at, response_code FROM network_outbox "
                                         "WHERE payment_id = $1 AND kind = 'capture_advice'", payment_id)
        assert (waiting["acknowledged_at"], waiting["response_code"]) == (None, "96")      # why it waits
    finally:
        simulator(solo_stack.stack, "/behaviour", {"network": "visa", "error_rate": 0.0})

    async def acknowledged() -> bool:
        return await solo_db.fetchval("SELECT response_code FROM network_outbox WHERE payment_id = $1 "
                                      "AND kind = 'capture_advice' AND acknowledged_at IS NOT NULL", payment_id) == "00"

    assert await eventually(acknowledged, WAIT_S), records(solo_stack, rrn)
    charged = simulator(solo_stack.stack, f"/summary?rrn={rrn}")["by_rrn"][rrn]
    assert (charged["charged_minor"], charged["held_minor"]) == (4100, 0), charged

