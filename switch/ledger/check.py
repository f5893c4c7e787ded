"""`switch ledger check`: every posting sums to zero, every payment's capture and fee postings match what it
captured, every refund's posting matches whether it succeeded, and every settlement (a matched line of an
active settlement file) is posted and is the only way a payment or refund became `settled`; every settled
payments' net was released to their merchant's available balance, and every payout's postings match its
status. And every row a payment writes names a merchant and payment that exist: those tables carry no
foreign keys (schema.sql says why), so this is where a row naming a missing one is found."""

from __future__ import annotations

import asyncpg

from switch.ledger.postings import PAYOUT_CLEARING_ACCOUNT
from switch.store import ledger as ledger_store

CHECK_ROWS_MAX = 100


async def check(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Every problem found, one line each (at most CHECK_ROWS_MAX per kind); empty when the ledger holds."""
    problems = [f"UNBALANCED {row['posting_id']} {row['currency']} {row['total']}"
                for row in await ledger_store.list_unbalanced_postings(conn, CHECK_ROWS_MAX)]
    for row in await ledger_store.list_mismatched_payments(conn, CHECK_ROWS_MAX):
        problems.append(f"PAYMENT {row['id']} captured {row['amount_received']} but posted capture "
                        f"{row['captured']} fee {row['fee']}")
    for row in await ledger_store.list_mismatched_refunds(conn, CHECK_ROWS_MAX):
        problems.append(f"REFUND {row['id']} {row['status']} {row['amount']} but posted {row['credited']}")
    for row in await ledger_store.list_mismatched_settlements(conn, CHECK_ROWS_MAX):
        problems.append(f"SETTLEMENT file {row['file_id']} line {row['line_no']} settled {row['amount_minor']} "
                        f"but posted {row['credited']}")
    for row in await ledger_store.list_settled_unmatched(conn, CHECK_ROWS_MAX):
        problems.append(f"SETTLED {row['id']} without a matched line in an active settlement file")
    for row in await ledger_store.list_mismatched_releases(conn, CHECK_ROWS_MAX):
        problems.append(f"RELEASE {row['merchant_id']} {row['currency']}: settled payments' net {row['owed']} "
                        f"but released {row['released']} to available")
    for row in await ledger_store.list_mismatched_payouts(conn, CHECK_ROWS_MAX, PAYOUT_CLEARING_ACCOUNT):
        problems.append(f"PAYOUT {row['id']} {row['status']} {row['amount']} but took {row['debited']} from "
                        f"available, {row['clearing']} in clearing")
    for row in await ledger_store.list_orphans(conn, CHECK_ROWS_MAX):
        problems.append(f"ORPHAN {row['child']} {row['row_id'][:64]} names {row['named']} {row['missing'][:64]}, "
                        f"which does not exist")
    return problems
