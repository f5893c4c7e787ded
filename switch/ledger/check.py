"""`switch ledger check`: every posting sums to zero, every payment's capture and fee postings match what it
captured, every refund's posting matches whether it succeeded, and every settlement (a matched line of an
active settlement file) is posted and is the only way a payment or refund became `settled`."""

from __future__ import annotations

import asyncpg

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
    return problems
