"""Ledger entries: written from postings given as data (switch.ledger.postings), and the whole-ledger check."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from switch.common.fees import PLATFORM_FEES_ACCOUNT, fee_sql
from switch.store.records import LedgerEntry

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def insert_entries(conn: asyncpg.Connection, entries: list[LedgerEntry]) -> None:
    await conn.executemany(
        "INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency) VALUES ($1, $2, $3, $4, $5)",
        [(e.posting_id, e.payment_id, e.account, e.amount, e.currency) for e in entries])


async def list_unbalanced_postings(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT posting_id, currency, sum(amount) AS total FROM ledger_entries "
                            "GROUP BY posting_id, currency HAVING sum(amount) <> 0 LIMIT $1", rows_max)


# The check recomputes the fee with the SQL form of the one formula (switch.common.fees), independently of
# the postings that were written: a posting the code got wrong is found, not trusted.
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
       <> CASE WHEN r.status IN ('succeeded', 'settled') THEN r.amount ELSE 0 END
LIMIT $1"""


# Every line an active settlement file matched has its posting, crediting the network's receivable by the
# line's amount; and every `settled` payment or refund was settled by such a line (or by an operator's
# write-off of its line's amount mismatch).
_SETTLEMENTS_MISMATCHED = """
SELECT m.file_id, m.line_no, l.amount_minor,
       COALESCE(-sum(e.amount) FILTER (WHERE e.account LIKE 'network:%'), 0) AS credited
FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id AND f.status = 'active'
JOIN settlement_lines l USING (file_id, line_no)
LEFT JOIN ledger_entries e ON e.posting_id = 'settle:' || m.file_id || ':' || m.line_no
WHERE m.class = 'matched'
GROUP BY m.file_id, m.line_no, l.amount_minor
HAVING COALESCE(-sum(e.amount) FILTER (WHERE e.account LIKE 'network:%'), 0) <> l.amount_minor
LIMIT $1"""

_SETTLED_UNMATCHED = """
SELECT id FROM (SELECT id, NULL::text AS refund FROM payments WHERE status = 'settled'
                UNION ALL SELECT payment_id, id FROM refunds WHERE status = 'settled') settled
WHERE NOT EXISTS (SELECT 1 FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id
                  LEFT JOIN settlement_resolutions r USING (file_id, line_no)
                  WHERE f.status = 'active' AND (m.class = 'matched' OR r.action = 'write_off')
                    AND m.payment_id = settled.id AND m.refund_id IS NOT DISTINCT FROM settled.refund)
LIMIT $1"""


async def list_mismatched_settlements(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_SETTLEMENTS_MISMATCHED, rows_max)


async def list_settled_unmatched(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_SETTLED_UNMATCHED, rows_max)


async def list_mismatched_payments(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_PAYMENTS_MISMATCHED, rows_max, PLATFORM_FEES_ACCOUNT)


async def list_mismatched_refunds(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_REFUNDS_MISMATCHED, rows_max)


async def count_postings(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(DISTINCT posting_id) FROM ledger_entries"))
