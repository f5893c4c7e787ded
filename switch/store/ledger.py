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


# Each merchant's available balance got, per currency, the net (captured less the fee) of its settled
# payments: released per file (less what a re-issue undid) or per written-off line, and no more.
_RELEASES_MISMATCHED = f"""
WITH released AS (
    SELECT substring(account FROM '^merchant:(.*):available$') AS merchant_id, currency, -sum(amount) AS released
    FROM ledger_entries
    WHERE account LIKE 'merchant:%:available' AND (posting_id LIKE 'release:%' OR posting_id LIKE 'unrelease:%'
                                                OR posting_id LIKE 'settle:%' OR posting_id LIKE 'unsettle:%')
    GROUP BY 1, 2
), owed AS (
    SELECT merchant_id, currency, sum(amount_received - {fee_sql("amount_received")}) AS owed
    FROM payments WHERE status = 'settled' GROUP BY 1, 2
)
SELECT merchant_id, currency, coalesce(r.released, 0) AS released, coalesce(o.owed, 0) AS owed
FROM released r FULL JOIN owed o USING (merchant_id, currency)
WHERE coalesce(r.released, 0) <> coalesce(o.owed, 0)
LIMIT $1"""

# Every payout took its amount from the merchant's available balance (given back if it failed), and the
# clearing account holds it until it is paid.
_PAYOUTS_MISMATCHED = """
SELECT o.id, o.status, o.amount,
       COALESCE(sum(e.amount) FILTER (WHERE e.account = 'merchant:' || o.merchant_id || ':available'), 0) AS debited,
       COALESCE(-sum(e.amount) FILTER (WHERE e.account = $2), 0) AS clearing
FROM payouts o LEFT JOIN ledger_entries e
    ON e.posting_id IN ('payout:' || o.id, 'payout_paid:' || o.id, 'payout_failed:' || o.id)
GROUP BY o.id
HAVING COALESCE(sum(e.amount) FILTER (WHERE e.account = 'merchant:' || o.merchant_id || ':available'), 0)
       <> CASE WHEN o.status = 'failed' THEN 0 ELSE o.amount END
    OR COALESCE(-sum(e.amount) FILTER (WHERE e.account = $2), 0)
       <> CASE WHEN o.status IN ('pending', 'in_transit') THEN o.amount ELSE 0 END
LIMIT $1"""


async def list_mismatched_releases(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_RELEASES_MISMATCHED, rows_max)


async def list_mismatched_payouts(conn: Conn, rows_max: int, clearing_account: str) -> list[asyncpg.Record]:
    return await conn.fetch(_PAYOUTS_MISMATCHED, rows_max, clearing_account)


async def list_mismatched_settlements(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_SETTLEMENTS_MISMATCHED, rows_max)


async def list_settled_unmatched(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_SETTLED_UNMATCHED, rows_max)


async def list_mismatched_payments(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_PAYMENTS_MISMATCHED, rows_max, PLATFORM_FEES_ACCOUNT)


async def list_mismatched_refunds(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    return await conn.fetch(_REFUNDS_MISMATCHED, rows_max)


# The rows every payment writes name their merchant and payment without a foreign key (schema.sql says
# why): (table, the row's id, the column naming the parent, the parent table). One anti-join each.
_NAMED_PARENTS = (
    ("payments", "id", "merchant_id", "merchants"),
    ("idempotency_keys", "idempotency_key", "merchant_id", "merchants"),
    ("refunds", "id", "merchant_id", "merchants"),
    ("refunds", "id", "payment_id", "payments"),
    ("payment_events", "id::text", "payment_id", "payments"),
    ("ledger_entries", "id::text", "payment_id", "payments"),
    ("network_outbox", "id::text", "payment_id", "payments"),
)
_ORPHANS = "\nUNION ALL\n".join(
    f"(SELECT '{child}' AS child, c.{row_id} AS row_id, '{column}' AS named, c.{column} AS missing FROM {child} c "
    f"WHERE c.{column} IS NOT NULL AND NOT EXISTS (SELECT FROM {parent} p WHERE p.id = c.{column}) LIMIT $1)"
    for child, row_id, column, parent in _NAMED_PARENTS)


async def list_orphans(conn: Conn, rows_max: int) -> list[asyncpg.Record]:
    """Rows naming a merchant or payment that does not exist (at most `rows_max` per kind)."""
    return await conn.fetch(_ORPHANS, rows_max)


async def count_postings(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(DISTINCT posting_id) FROM ledger_entries"))
