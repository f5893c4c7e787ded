"""Ledger postings beyond the ones written by the flows themselves, and the whole-ledger check.

Accounts (signed minor units: debit positive, credit negative):
    network:<name>:receivable    what a card network owes us for captured payments, less refunds
    merchant:<id>:payable        what we owe a merchant: captures, less fees and refunds
    platform:fees                our fee revenue
Postings, each summing to zero: ``capture:<payment>`` and ``fee:<payment>`` when a payment is captured
(or a sale approved), ``refund:<refund>`` when a refund succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from switch import store
from switch.fees import PLATFORM_FEES_ACCOUNT, fee_minor, fee_sql

CHECK_ROWS_MAX = 100


async def post_fee(conn: asyncpg.Connection, payment: Mapping[str, Any]) -> None:
    """The merchant fee on a captured payment, in the capture's transaction."""
    fee = fee_minor(payment["amount_received"])
    await store.post_ledger(conn, f"fee:{payment['id']}", payment["id"], payment["currency"], [
        (f"merchant:{payment['merchant_id']}:payable", fee),
        (PLATFORM_FEES_ACCOUNT, -fee),
    ])


_PAYMENTS_MISMATCHED = f"""
WITH posted AS (
    SELECT p.id, p.amount_received,
           COALESCE(sum(l.amount) FILTER (WHERE l.posting_id = 'capture:' || p.id AND l.account LIKE 'network:%'), 0)
               AS captured,
           COALESCE(-sum(l.amount) FILTER (WHERE l.posting_id = 'fee:' || p.id AND l.account = $2), 0) AS fee
    FROM payments p LEFT JOIN ledger_entries l ON l.posting_id IN ('capture:' || p.id, 'fee:' || p.id)
    GROUP BY p.id
)
SELECT id, amount_received, captured, fee FROM posted
WHERE captured <> amount_received
   OR fee <> CASE WHEN amount_received > 0 THEN {fee_sql("amount_received")} ELSE 0 END
LIMIT $1"""

_REFUNDS_MISMATCHED = """
SELECT r.id, r.status, r.amount,
       COALESCE(-sum(l.amount) FILTER (WHERE l.account LIKE 'network:%'), 0) AS credited
FROM refunds r LEFT JOIN ledger_entries l ON l.posting_id = 'refund:' || r.id
GROUP BY r.id
HAVING COALESCE(-sum(l.amount) FILTER (WHERE l.account LIKE 'network:%'), 0)
       <> CASE WHEN r.status = 'succeeded' THEN r.amount ELSE 0 END
LIMIT $1"""


async def check(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Every problem found, one line each (at most CHECK_ROWS_MAX per kind); empty when the ledger holds:
    every posting sums to zero, every payment's capture and fee postings match what it captured, and every
    refund's posting matches whether it succeeded."""
    problems = [f"UNBALANCED {row['posting_id']} {row['currency']} {row['total']}"
                for row in await store.unbalanced_postings(conn)]
    for row in await conn.fetch(_PAYMENTS_MISMATCHED, CHECK_ROWS_MAX, PLATFORM_FEES_ACCOUNT):
        problems.append(f"PAYMENT {row['id']} captured {row['amount_received']} but posted capture "
                        f"{row['captured']} fee {row['fee']}")
    for row in await conn.fetch(_REFUNDS_MISMATCHED, CHECK_ROWS_MAX):
        problems.append(f"REFUND {row['id']} {row['status']} {row['amount']} but posted {row['credited']}")
    return problems
