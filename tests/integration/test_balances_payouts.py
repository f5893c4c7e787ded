"""Balances and payouts on the real stack: sales are pending (less our fee) until the network's settlement
file is imported, then available; payouts never take more than is available, even when requested at
once; a payout request replays by its Idempotency-Key; a payout run files the pending payouts for the bank,
whose answer pays them or gives the funds back; a refund after a payout leaves the balance negative, and
the next payout nets it. JPY (no decimals) and BHD (three) keep their own balances."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from loadtest.httpclient import Client
from switch.common.fees import fee_minor
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment, shop

pytestmark = pytest.mark.integration


async def _switch(stack, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "switch", *args], capture_output=True,
                                   text=True, env={**os.environ, **stack.switch_env()})


async def _sales(client: Client, amounts: list[int], currency: str = "usd") -> list[dict[str, Any]]:
    made = []
    for amount in amounts:
        answer = await client.request("POST", "/v1/payments", {**payment(amount, luhn_card("4571"), "automatic"),
                                                               "currency": currency}, idempotency_key=key("po"))
        assert answer.status == 200 and answer.json()["status"] == "succeeded", answer.body
        made.append(answer.json())
    return made


async def _settle_the_day(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = [Path(name) for name in simulator(stack, "/settlement", {})["files"]]
    for path in files:
        network = path.name.split("-", 1)[0]
        run = await _switch(stack, "settlement", "import", "--network", network, "--reports-dir",
                            str(tmp_path / "reports"), str(path))
        assert run.returncode in (0, 1), run.stderr


async def _balance(client: Client) -> dict[str, dict[str, int]]:
    answer = await client.request("GET", "/v1/balance")
    assert answer.status == 200, answer.body
    body = answer.json()
    return {part: {money["currency"]: money["amount"] for money in body[part]} for part in ("available", "pending")}


async def _payout(client: Client, amount: int, currency: str = "usd", idempotency_key: str | None = None) -> Any:
    return await client.request("POST", "/v1/payouts", {"amount": amount, "currency": currency},
                                idempotency_key=idempotency_key or key("po"))


async def _merchant_of(db, payment_id: str) -> str:  # type: ignore[no-untyped-def]
    return await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", payment_id)


def _file_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


async def test_settlement_makes_the_balance_available_and_payouts_never_exceed_it(stack, db, tmp_path: Path) -> None:
    async with shop(stack, "payout-shop-1") as client:
        amounts = [2000, 3500, 999]
        sales = await _sales(client, amounts)
        jpy, bhd = (await _sales(client, [5000], "jpy"))[0], (await _sales(client, [12_345], "bhd"))[0]
        net = sum(amount - fee_minor(amount) for amount in amounts)
        before = await _balance(client)
        assert before["pending"] == {"usd": net, "jpy": 5000 - fee_minor(5000), "bhd": 12_345 - fee_minor(12_345)}
        assert before["available"] == {"usd": 0, "jpy": 0, "bhd": 0}
        refused = await _payout(client, 1)
        assert refused.status == 402 and refused.json()["error"]["code"] == "balance_insufficient"

        await _settle_the_day(stack, tmp_path)
        after = await _balance(client)
        assert after["available"]["usd"] == net and after["pending"]["usd"] == 0
        assert after["available"]["jpy"] == 5000 - fee_minor(5000)
        assert after["available"]["bhd"] == 12_345 - fee_minor(12_345)
        statuses = await db.fetch("SELECT status FROM payments WHERE id = ANY($1::text[])",
                                  [s["id"] for s in sales] + [jpy["id"], bhd["id"]])
        assert {row["status"] for row in statuses} == {"settled"}

        listed = (await client.request("GET", "/v1/balance_transactions?limit=100")).json()
        usd = [t for t in listed["data"] if t["currency"] == "usd"]
        assert sum(t["amount"] for t in usd if t["balance"] == "available") == net
        assert sum(t["amount"] for t in usd if t["type"] == "charge") == sum(amounts)
        assert sum(t["amount"] for t in usd if t["type"] == "fee") == -sum(fee_minor(a) for a in amounts)
        cursor = listed["data"][1]["id"]
        page = await client.request("GET", f"/v1/balance_transactions?limit=2&starting_after={cursor}")
        assert [t["id"] for t in page.json()["data"]] == [t["id"] for t in listed["data"][2:4]]

        too_much = await _payout(client, net + 1)
        assert too_much.status == 402, too_much.body
        first_key = key("po")
        first = await _payout(client, 1000, idempotency_key=first_key)
        assert first.status == 200 and first.json()["status"] == "pending", first.body
        again = await _payout(client, 1000, idempotency_key=first_key)
        assert again.json()["id"] == first.json()["id"] and again.headers.get("idempotent-replayed") == "true"
        reused = await _payout(client, 1001, idempotency_key=first_key)
        assert reused.status == 400 and reused.json()["error"]["code"] == "idempotency_key_reused"
        assert (await _balance(client))["available"]["usd"] == net - 1000
        merchant = await _merchant_of(db, sales[0]["id"])

        run = await _switch(stack, "payouts", "run", "--dir", str(tmp_path / "payouts"), "--date", "2026-01-05")
        assert run.returncode == 0, run.stderr
        mine = [row for path in (tmp_path / "payouts").glob("payouts-20260105-*.csv") for row in _file_rows(path)
                if row["merchant_id"] == merchant]
        assert sorted((row["currency"], int(row["amount_minor"])) for row in mine) == sorted([
            ("usd", 1000), ("usd", net - 1000), ("jpy", 5000 - fee_minor(5000)), ("bhd", 12_345 - fee_minor(12_345))])
        assert (await _balance(client))["available"] == {"usd": 0, "jpy": 0, "bhd": 0}

        scheduled = next(row["payout_id"] for row in mine if row["currency"] == "usd" and row["payout_id"] !=
                         first.json()["id"])
        paid = await _switch(stack, "payouts", "confirm", first.json()["id"], "--paid")
        failed = await _switch(stack, "payouts", "confirm", scheduled, "--failed", "account_closed")
        assert paid.returncode == 0 and failed.returncode == 0, paid.stderr + failed.stderr
        assert (await _switch(stack, "payouts", "confirm", scheduled, "--paid")).returncode == 2   # answered already
        assert (await _balance(client))["available"]["usd"] == net - 1000      # the failed payout's funds are back
        shown = (await client.request("GET", f"/v1/payouts/{scheduled}")).json()
        assert (shown["status"], shown["failure_code"], shown["automatic"]) == ("failed", "account_closed", True)
        assert (await _switch(stack, "ledger", "check")).returncode == 0


async def test_concurrent_payout_requests_never_pay_out_more_than_available(stack, tmp_path: Path) -> None:
    async with shop(stack, "payout-shop-2") as client:
        await _sales(client, [3000, 3000, 3000])
        await _settle_the_day(stack, tmp_path)
        available = (await _balance(client))["available"]["usd"]
        share = available // 3
        answers = await asyncio.gather(*(_payout(client, share) for _ in range(10)))
        assert sorted(answer.status for answer in answers) == [200] * 3 + [402] * 7
        assert (await _balance(client))["available"]["usd"] == available - 3 * share


async def test_a_refund_after_payout_goes_negative_and_the_next_payout_nets_it(stack, db, tmp_path: Path) -> None:
    client = Client(stack.switch_url, stack.seed_merchant("payout-shop-3", fraud_rules="lists"))
    payouts = tmp_path / "payouts"
    try:
        sale = (await _sales(client, [5000]))[0]
        merchant = await _merchant_of(db, sale["id"])
        await _settle_the_day(stack, tmp_path)
        assert (await _switch(stack, "payouts", "run", "--dir", str(payouts), "--date", "2026-02-01")).returncode == 0
        refund = await client.request("POST", "/v1/refunds", {"payment": sale["id"], "amount": 4000},
                                      idempotency_key=key("po"))
        assert refund.status == 200 and refund.json()["status"] == "succeeded", refund.body
        assert (await _balance(client))["available"]["usd"] == -4000
        assert (await _switch(stack, "payouts", "run", "--dir", str(payouts), "--date", "2026-02-02")).returncode == 0
        assert not await db.fetchval("SELECT count(*) FROM payouts WHERE merchant_id = $1 AND scheduled_for = $2",
                                     merchant, date(2026, 2, 2))     # nothing to pay out: the debt is carried
        await _sales(client, [10_000])
        await _settle_the_day(stack, tmp_path)
        assert (await _switch(stack, "payouts", "run", "--dir", str(payouts), "--date", "2026-02-03")).returncode == 0
        netted = await db.fetchval("SELECT amount FROM payouts WHERE merchant_id = $1 AND scheduled_for = $2",
                                   merchant, date(2026, 2, 3))
        assert netted == 10_000 - fee_minor(10_000) - 4000
        assert (await _switch(stack, "ledger", "check")).returncode == 0
    finally:
        await client.close()


async def test_two_payout_runs_at_once_pay_each_balance_once(stack, db, tmp_path: Path) -> None:
    async with shop(stack, "payout-shop-4") as client:
        sale = (await _sales(client, [4200]))[0]
        merchant = await _merchant_of(db, sale["id"])
        await _settle_the_day(stack, tmp_path)
        runs = await asyncio.gather(*(_switch(stack, "payouts", "run", "--dir", str(tmp_path / "payouts"), "--date",
                                              "2026-03-01") for _ in range(2)))
        assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
        rows = await db.fetch("SELECT amount, file_name FROM payouts WHERE merchant_id = $1", merchant)
        assert [row["amount"] for row in rows] == [4200 - fee_minor(4200)]
        filed = [r for path in (tmp_path / "payouts").glob("*.csv") for r in _file_rows(path)
                 if r["merchant_id"] == merchant]
        assert len(filed) == 1 and rows[0]["file_name"] is not None


async def test_a_bad_payout_request_is_refused_clearly_and_books_nothing(stack, db) -> None:  # type: ignore[no-untyped-def]
    async with shop(stack, "payout-shop-5") as client:
        cases = [({"amount": 0, "currency": "usd"}, "parameter_invalid", "amount"),
                 ({"amount": 100, "currency": "xyz"}, "parameter_invalid", "currency"),
                 ({"amount": 100, "currency": "usd", "destination": "ba_1"}, "parameter_invalid", "destination"),
                 ({"amount": 100}, "parameter_invalid", "currency")]
        for body, code, param in cases:
            answer = await client.request("POST", "/v1/payouts", body, idempotency_key=key("po"))
            error = answer.json()["error"]
            assert (answer.status, error["code"], error["param"]) == (400, code, param), (body, answer.body)
        no_key = await client.request("POST", "/v1/payouts", {"amount": 100, "currency": "usd"})
        assert no_key.status == 400 and no_key.json()["error"]["code"] == "idempotency_key_missing"
        missing = await client.request("GET", "/v1/payouts/po_0000000000000000000000")
        assert missing.status == 404 and missing.json()["error"]["code"] == "resource_missing"
        for cursor in ("pay_1", "txn_9999999999999999999"):         # the second is past bigint
            bad_cursor = await client.request("GET", f"/v1/balance_transactions?starting_after={cursor}")
            assert bad_cursor.status == 400 and bad_cursor.json()["error"]["param"] == "starting_after", cursor
        listed = await client.request("GET", "/v1/payouts")
        assert listed.status == 200 and listed.json()["data"] == []
