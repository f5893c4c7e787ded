"""The ledger: a capture (or an approved sale) posts the captured amount and the platform's fee (2.9 % +
30 minor units) from the merchant's payable to platform:fees; refunds do not return the fee; every posting
balances, and `switch ledger check` catches a missing or wrong posting."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from loadtest.httpclient import Client
from switch.common.fees import fee_minor
from tests.integration.helpers import MASTERCARD_OK, key, payment

pytestmark = pytest.mark.integration


async def entries(db, payment_id: str) -> dict[tuple[str, str], int]:
    rows = await db.fetch("SELECT posting_id, account, sum(amount) AS amount FROM ledger_entries "
                          "WHERE payment_id = $1 GROUP BY posting_id, account", payment_id)
    return {(row["posting_id"].split(":")[0], row["account"]): row["amount"] for row in rows}


def ledger_check(stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch", "ledger", "check"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **stack.switch_env()}, check=False)


async def post(api: Client, path: str, body: dict[str, Any]) -> Any:
    response = await api.request("POST", path, body, idempotency_key=key())
    assert response.status == 200, response.body
    return response.json()


async def test_capture_posts_amount_and_fee_and_refunds_keep_the_fee(api: Client, db) -> None:
    created = await post(api, "/v1/payments", payment(10_000))
    merchant = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", created["id"])
    assert await entries(db, created["id"]) == {}                 # an authorization moves no money yet
    await post(api, f"/v1/payments/{created['id']}/capture", {"amount_to_capture": 7300})
    await post(api, "/v1/refunds", {"payment": created["id"], "amount": 2000})
    fee = fee_minor(7300)
    assert fee == 242                                             # 211.7 rounded half up, + 30
    assert await entries(db, created["id"]) == {
        ("capture", "network:visa:receivable"): 7300, ("capture", f"merchant:{merchant}:payable"): -7300,
        ("fee", f"merchant:{merchant}:payable"): fee, ("fee", "platform:fees"): -fee,
        ("refund", f"merchant:{merchant}:available"): 2000, ("refund", "network:visa:receivable"): -2000,
    }


@pytest.mark.parametrize(("currency", "amount"), [("usd", 2500), ("jpy", 1000), ("bhd", 20)])
async def test_an_approved_sale_posts_its_capture_and_fee(api: Client, db, currency: str, amount: int) -> None:
    created = await post(api, "/v1/payments", {**payment(amount, MASTERCARD_OK, "automatic"), "currency": currency})
    merchant = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", created["id"])
    fee = fee_minor(amount)
    assert await entries(db, created["id"]) == {
        ("capture", "network:mastercard:receivable"): amount, ("capture", f"merchant:{merchant}:payable"): -amount,
        ("fee", f"merchant:{merchant}:payable"): fee, ("fee", "platform:fees"): -fee,
    }
    currencies = {row[0] for row in await db.fetch("SELECT DISTINCT currency FROM ledger_entries WHERE payment_id = $1",
                                                   created["id"])}
    assert currencies == {currency}


async def test_ledger_check_catches_a_missing_fee_and_a_wrong_refund(api: Client, stack, db) -> None:
    assert ledger_check(stack).returncode == 0
    sale = await post(api, "/v1/payments", payment(4000, MASTERCARD_OK, "automatic"))
    refund = await post(api, "/v1/refunds", {"payment": sale["id"], "amount": 500})
    saved = await db.fetch("SELECT posting_id, payment_id, account, amount, currency FROM ledger_entries "
                           "WHERE posting_id = ANY($1)", [f"fee:{sale['id']}", f"refund:{refund['id']}"])
    assert len(saved) == 4
    await db.execute("DELETE FROM ledger_entries WHERE posting_id = ANY($1)",
                     [f"fee:{sale['id']}", f"refund:{refund['id']}"])
    try:
        result = ledger_check(stack)
        assert result.returncode == 1
        assert f"PAYMENT {sale['id']}" in result.stdout and f"REFUND {refund['id']}" in result.stdout, result.stdout
    finally:
        await db.executemany("INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency) "
                             "VALUES ($1, $2, $3, $4, $5)", [tuple(row) for row in saved])
    assert ledger_check(stack).returncode == 0
