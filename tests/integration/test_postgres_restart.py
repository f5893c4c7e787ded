"""Postgres restarted with `-m immediate` in the middle of a load of payments: every answer is a payment or
a retryable error (never 500), nothing is charged twice at the network, nothing stays in flight, the
ledger holds, and the switch serves again by itself within seconds. On the dedicated stack."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import pytest

from loadtest.httpclient import Client, HttpResponse
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment
from tests.integration.solo import SoloStack, eventually

pytestmark = pytest.mark.integration

SENDERS = 8
RUN_S = 6.0
PAYMENTS_MAX = 3000
HEAL_WAIT_S = 20.0
ANSWERS = {200, 503, 504}       # a payment, or a retryable refusal; a 504 is a reversed authorization


async def _load(client_of, number: str, stop_at: float, sent: list[tuple[str, HttpResponse]]) -> None:
    client: Client = client_of()
    try:
        while time.monotonic() < stop_at and len(sent) < PAYMENTS_MAX:
            idem = key("pg")
            response = await client.request("POST", "/v1/payments", payment(200 + len(sent) % 50, number, "automatic"),
                                            idempotency_key=idem, timeout_s=15)
            sent.append((idem, response))
    finally:
        await client.close()


async def test_postgres_restarted_mid_run_answers_503_and_heals(solo_stack: SoloStack) -> None:
    switch = solo_stack.start_switch("switch-pg-restart", {"SWITCH_RECOVERY_GRACE_S": "0.5"})
    number = luhn_card("45")
    sent: list[tuple[str, HttpResponse]] = []
    stop_at = time.monotonic() + RUN_S
    try:
        load = asyncio.gather(*(_load(lambda: solo_stack.client(switch), number, stop_at, sent)
                                for _ in range(SENDERS)))
        await asyncio.sleep(RUN_S / 3)
        await asyncio.to_thread(solo_stack.stack.restart_postgres)
        await load
        statuses = Counter(response.status for _, response in sent)
        print("answers around the restart:", statuses)
        unexpected = [(r.status, r.body[:300]) for _, r in sent if r.status not in ANSWERS]
        assert not unexpected, (statuses, unexpected[:3])
        for _, response in sent:
            if response.status == 503:
                assert response.json()["error"]["code"] in {"database_unavailable", "idempotency_unavailable",
                                                            "vault_unavailable", "network_unavailable"}

        # It heals by itself: new payments go through again.
        async def serving() -> bool:
            client = solo_stack.client(switch)
            try:
                probe = await client.request("POST", "/v1/payments", payment(199, number, "automatic"),
                                             idempotency_key=key("pg-after"))
            finally:
                await client.close()
            if probe.status == 200:
                sent.append(("", probe))
            return probe.status == 200

        assert await eventually(serving, HEAL_WAIT_S, interval_s=0.25)
        log = switch.service.log_path.read_text()
        codes = {response.json()["error"]["code"] for _, response in sent if response.status == 503}
        if "database_unavailable" in codes:     # (the vault, which needs Postgres too, may refuse them all first)
            assert "postgres unavailable" in log and "postgres available again" in log, log[-3000:]
        assert not re.search(r"ERROR .*: 500 req_", log), log[-3000:]

        # Nothing stays in flight once recovery has run, and the ledger holds.
        pool = await solo_stack.pool()
        try:
            async def settled() -> bool:
                return await pool.fetchval("SELECT count(*) FROM payments WHERE status = 'processing'") == 0
            assert await eventually(settled, HEAL_WAIT_S, interval_s=0.25)
        finally:
            await pool.close()
        check = solo_stack.ledger_check()
        assert check.returncode == 0, check.stdout
    finally:
        solo_stack.stop_switch(switch)

    summary = simulator(solo_stack.stack, f"/summary?card_last4={number[-4:]}")
    assert summary["charged_once"], summary["charged_more_than_once"]
