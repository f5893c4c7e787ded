"""Settlement files, their lines and what each line matched: the import (COPY of the raw lines into a
staging table, split in SQL) and the set-based matching of a file's lines against captures, sales and
refunds."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from switch.common.fees import fee_sql

STAGE = """
CREATE TEMP TABLE IF NOT EXISTS settlement_stage (line_no bigserial, raw text) ON COMMIT DROP"""

# A staged line's columns by position (docs/simulator.md): D,network,rrn,stan,terminal_id,auth_code,
# transaction_type,amount_minor,currency,transaction_date,settlement_date,interchange_fee_minor. Lines that
# are not details keep their raw text only; a malformed detail line fails the import (nothing is kept).
INSERT_LINES = """
INSERT INTO settlement_lines (file_id, line_no, raw, record_type, rrn, stan, terminal_id, auth_code,
                              transaction_type, amount_minor, currency, transaction_date, interchange_fee_minor)
SELECT $1, s.line_no, s.raw, CASE WHEN s.line_no = 1 THEN 'H' ELSE split_part(s.raw, ',', 1) END,
       f[3], f[4], f[5], f[6], f[7], f[8]::bigint, f[9], f[10]::date, f[12]::bigint
FROM settlement_stage s,
     LATERAL (SELECT CASE WHEN s.line_no > 1 AND split_part(s.raw, ',', 1) = 'D'
                          THEN string_to_array(s.raw, ',') END AS f) parts
ORDER BY s.line_no"""

# Each detail line against our records, by network and RRN (unique per network): captures and sales in
# `payments`, refunds by their own 0200's RRN in `refunds`. The first of several lines for the same item
# matches; the others, and a line for an item another active file already settled, are duplicates. A
# line for an item we voided, failed or whose refund failed was settled after its reversal.
MATCH = """
WITH lines AS (
    SELECT l.*, f.network,
           row_number() OVER (PARTITION BY l.rrn, l.transaction_type ORDER BY l.line_no) AS seen
    FROM settlement_lines l JOIN settlement_files f ON f.id = l.file_id
    WHERE l.file_id = $1 AND l.record_type = 'D'
), currencies AS (
    SELECT * FROM unnest($2::text[], $3::text[]) AS c(alpha, numeric)
), ours AS (
    SELECT l.line_no, p.id AS payment_id, NULL::text AS refund_id, p.amount_received AS amount,
           c.numeric AS currency, p.status IN ('canceled', 'failed') AS reversed
    FROM lines l JOIN payments p ON p.network = l.network AND p.rrn = l.rrn
    LEFT JOIN currencies c ON c.alpha = p.currency
    WHERE l.transaction_type IN ('capture', 'sale')
    UNION ALL
    SELECT l.line_no, r.payment_id, r.id, r.amount, c.numeric, r.status = 'failed'
    FROM lines l JOIN refunds r ON r.rrn = l.rrn JOIN payments p ON p.id = r.payment_id AND p.network = l.network
    LEFT JOIN currencies c ON c.alpha = r.currency
    WHERE l.transaction_type = 'refund'
)
INSERT INTO settlement_matches (file_id, line_no, class, payment_id, refund_id, ours_amount_minor,
                                theirs_amount_minor)
SELECT $1, l.line_no,
       CASE WHEN l.seen > 1 OR EXISTS (
                SELECT 1 FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id
                JOIN settlement_lines ml ON ml.file_id = m.file_id AND ml.line_no = m.line_no
                WHERE f.status = 'active' AND f.id <> $1 AND f.network = l.network AND m.class = 'matched'
                  AND ml.rrn = l.rrn AND ml.transaction_type = l.transaction_type) THEN 'duplicate_in_file'
            WHEN o.line_no IS NULL THEN 'missing_in_ours'
            WHEN o.reversed THEN 'settled_after_reversal'
            WHEN o.currency IS DISTINCT FROM l.currency THEN 'currency_mismatch'
            WHEN o.amount <> abs(l.amount_minor) THEN 'amount_mismatch'
            ELSE 'matched' END,
       o.payment_id, o.refund_id, o.amount, abs(l.amount_minor)
FROM lines l LEFT JOIN ours o ON o.line_no = l.line_no
WHERE l.transaction_type <> 'adjustment'
ON CONFLICT DO NOTHING"""


# Our items the network had by the file's cut-off ($3) and no active file settled or listed: captures by
# the acknowledgement of their advice, sales by their approval, refunds by theirs (each a time after the
# network recorded the item, so an item at or before the cut-off was the network's before it). Those the
# network had for longer than the grace ($4) become lines of class missing_in_theirs in this file (record
# type M, numbered after its own lines); the others are counted as awaiting settlement, by the same
# statement (one scan of the unsettled items).
_UNSETTLED = """
WITH sent AS (
    SELECT p.id AS payment_id, NULL::text AS refund_id, 'capture' AS kind, p.rrn, p.amount_received AS amount,
           p.currency, o.acknowledged_at AS sent_at
    FROM payments p JOIN network_outbox o ON o.payment_id = p.id AND o.kind = 'capture_advice'
    WHERE p.network = $2 AND p.status = 'succeeded' AND o.acknowledged_at <= $3
    UNION ALL
    SELECT p.id, NULL, 'sale', p.rrn, p.amount_received, p.currency, e.created_at
    FROM payments p JOIN payment_events e ON e.payment_id = p.id AND e.type = 'sale.approved'
    WHERE p.network = $2 AND p.status = 'succeeded' AND e.created_at <= $3
    UNION ALL
    SELECT r.payment_id, r.id, 'refund', r.rrn, r.amount, r.currency, r.updated_at
    FROM refunds r JOIN payments p ON p.id = r.payment_id
    WHERE p.network = $2 AND r.status = 'succeeded' AND r.updated_at <= $3
), unsettled AS (
    SELECT s.* FROM sent s
    WHERE NOT EXISTS (SELECT 1 FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id
                      WHERE f.status = 'active' AND m.payment_id = s.payment_id
                        AND m.refund_id IS NOT DISTINCT FROM s.refund_id)
)"""

MISSING = _UNSETTLED + """, overdue AS (
    SELECT u.*, (SELECT lines FROM settlement_files WHERE id = $1)
                + row_number() OVER (ORDER BY u.sent_at, u.payment_id, u.refund_id) AS line_no
    FROM unsettled u WHERE u.sent_at <= $3 - $4::interval
), currencies AS (
    SELECT * FROM unnest($5::text[], $6::text[]) AS c(alpha, numeric)
), lines AS (
    INSERT INTO settlement_lines (file_id, line_no, raw, record_type, rrn, transaction_type, currency,
                                  transaction_date)
    SELECT $1, o.line_no, concat_ws(',', 'M', $2, o.rrn, o.kind, o.payment_id, o.refund_id, o.amount, o.currency,
                                    to_char(o.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
           'M', o.rrn, o.kind, c.numeric, (o.sent_at AT TIME ZONE 'UTC')::date
    FROM overdue o LEFT JOIN currencies c ON c.alpha = o.currency
    RETURNING line_no
), reported AS (
    INSERT INTO settlement_matches (file_id, line_no, class, payment_id, refund_id, ours_amount_minor)
    SELECT $1, o.line_no, 'missing_in_theirs', o.payment_id, o.refund_id, o.amount
    FROM overdue o JOIN lines l ON l.line_no = o.line_no
)
SELECT count(*) FROM unsettled WHERE sent_at > $3 - $4::interval"""

# An item an earlier file reported missing, that this file settled: the exception resolves itself.
SETTLED_LATE = """
INSERT INTO settlement_resolutions (file_id, line_no, action, reason, actor)
SELECT m.file_id, m.line_no, 'acknowledge', 'settled late, in file ' || $1, 'switch'
FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id AND f.status = 'active'
JOIN settlement_matches n ON n.file_id = $1 AND n.class = 'matched' AND n.payment_id = m.payment_id
                         AND n.refund_id IS NOT DISTINCT FROM m.refund_id
WHERE m.class = 'missing_in_theirs' AND m.file_id <> $1
ON CONFLICT DO NOTHING"""


async def flag_missing(conn: asyncpg.Connection, file_id: int, network: str, cut_off_at: datetime,
                       grace: timedelta, alpha: Sequence[str], numeric: Sequence[str]) -> int:
    """Report our overdue unsettled items as this file's missing_in_theirs lines; how many are awaiting
    settlement still (within the grace)."""
    return int(await conn.fetchval(MISSING, file_id, network, cut_off_at, grace, list(alpha), list(numeric)))


async def resolve_settled_late(conn: asyncpg.Connection, file_id: int) -> None:
    await conn.execute(SETTLED_LATE, file_id)


async def lock_network(conn: asyncpg.Connection, network: str) -> None:
    """Imports of one network's files queue behind each other (until the transaction ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('settlement:' || $1))", network)


async def find_file(conn: asyncpg.Connection, network: str, sha256: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, status FROM settlement_files WHERE network = $1 AND sha256 = $2",
                               network, sha256)


async def insert_file(conn: asyncpg.Connection, network: str, file_name: str, sha256: bytes, lines: int) -> int:
    return await conn.fetchval(
        "INSERT INTO settlement_files (network, file_name, sha256, lines) VALUES ($1, $2, $3, $4) RETURNING id",
        network, file_name, sha256, lines)


async def stage_lines(conn: asyncpg.Connection, data: bytes) -> None:
    """COPY the file's lines, from the bytes that were checked, one value each: CSV format with a quote,
    delimiter and null that a settlement file never holds, so no field is split and no escape read."""
    await conn.execute(STAGE)
    await conn.execute("TRUNCATE settlement_stage")
    await conn.copy_to_table("settlement_stage", source=io.BytesIO(data), columns=["raw"], format="csv",
                             delimiter="\x1f", quote="\x1d", null="\x1e")


async def insert_lines(conn: asyncpg.Connection, file_id: int) -> None:
    await conn.execute(INSERT_LINES, file_id)
    # A day's file can be a million lines: let the planner see them before matching (a plan made for an
    # empty table joins each line to the payments by a scan).
    await conn.execute("ANALYZE settlement_lines")


async def set_cut_off(conn: asyncpg.Connection, file_id: int, cut_off_at: datetime | None,
                      settlement_date: Any) -> None:
    await conn.execute("UPDATE settlement_files SET cut_off_at = $2, settlement_date = $3 WHERE id = $1",
                       file_id, cut_off_at, settlement_date)


async def trailers(conn: asyncpg.Connection, file_id: int) -> list[str]:
    return [row["raw"] for row in await conn.fetch(
        "SELECT raw FROM settlement_lines WHERE file_id = $1 AND record_type = 'T' ORDER BY line_no", file_id)]


async def supersede(conn: asyncpg.Connection, network: str, cut_off_at: datetime, file_id: int) -> list[int]:
    """Mark the earlier active files of the same cut-off as superseded by `file_id`; their ids."""
    rows = await conn.fetch(
        "UPDATE settlement_files SET status = 'superseded', superseded_by = $3 WHERE network = $1 AND "
        "cut_off_at = $2 AND status = 'active' AND id <> $3 RETURNING id", network, cut_off_at, file_id)
    return [row["id"] for row in rows]


async def match(conn: asyncpg.Connection, file_id: int, alpha: Sequence[str], numeric: Sequence[str]) -> None:
    await conn.execute(MATCH, file_id, list(alpha), list(numeric))


_MATCH_ROWS = """SELECT m.line_no, m.class, l.rrn, l.transaction_type, m.payment_id, m.refund_id,
    m.ours_amount_minor, m.theirs_amount_minor, l.currency FROM settlement_matches m
    JOIN settlement_lines l USING (file_id, line_no) WHERE m.file_id = $1"""


async def class_counts(conn: asyncpg.Connection, file_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT class, count(*) AS count FROM settlement_matches WHERE file_id = $1 "
                            "GROUP BY class", file_id)


async def unmatched(conn: asyncpg.Connection, file_id: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"{_MATCH_ROWS} AND m.class <> 'matched' ORDER BY m.line_no LIMIT $2", file_id, limit)


async def copy_matches(conn: asyncpg.Connection, file_id: int, path: str) -> None:
    """Every line of the file with its class, as CSV with a header, streamed by Postgres into `path`."""
    await conn.copy_from_query(f"{_MATCH_ROWS} ORDER BY m.line_no", file_id, output=path, format="csv",
                               header=True)


# A matched line settles its item: the network's receivable is credited by the line's amount, the
# settlement bank account gets the amount less the interchange fee the file charged, the fee goes to its
# own account; the payment or refund moves to `settled` (a payment with its event). Posting
# `settle:<file>:<line>` (the amounts are the line's: a refund's is negative; a refund left the merchant's
# available balance when it succeeded). The settled payments' net (captured less our fee) is released
# from each merchant's pending to its available balance, one posting per merchant and currency:
# `release:<file>:<merchant>:<currency>` (a million lines of one merchant are two entries, not two million).
SETTLE = """
WITH matched AS (
    SELECT m.line_no, m.payment_id, m.refund_id, l.amount_minor, coalesce(l.interchange_fee_minor, 0) AS fee,
           f.network, p.currency
    FROM settlement_matches m JOIN settlement_lines l USING (file_id, line_no)
    JOIN settlement_files f ON f.id = m.file_id JOIN payments p ON p.id = m.payment_id
    WHERE m.file_id = $1 AND m.class = 'matched'
), entries AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT 'settle:' || $1 || ':' || m.line_no, m.payment_id, e.account, e.amount, m.currency
    FROM matched m, LATERAL (VALUES ('network:' || m.network || ':receivable', -m.amount_minor),
                                    ('settlement:' || m.network || ':bank', m.amount_minor - m.fee),
                                    ('expense:' || m.network || ':interchange', m.fee)) AS e(account, amount)
    WHERE e.amount <> 0
), paid AS (
    UPDATE payments p SET status = 'settled', updated_at = now()
    FROM matched m WHERE m.refund_id IS NULL AND p.id = m.payment_id AND p.status = 'succeeded'
    RETURNING p.id, p.amount_received, p.merchant_id, p.currency, m.line_no
), paid_events AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, 'payment.settled', 'succeeded', 'settled', amount_received FROM paid
), paid_merchant_events AS (
    INSERT INTO events (merchant_id, type, object_id) SELECT merchant_id, 'payment.settled', id FROM paid
), released AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT 'release:' || $1 || ':' || t.merchant_id || ':' || t.currency, NULL,
           'merchant:' || t.merchant_id || e.account, e.sign * t.net, t.currency
    FROM (SELECT merchant_id, currency, sum(amount_received - {fee}) AS net FROM paid p GROUP BY 1, 2) t,
         LATERAL (VALUES (':payable', 1), (':available', -1)) AS e(account, sign)
    WHERE t.net <> 0
)
UPDATE refunds r SET status = 'settled', updated_at = now()
FROM matched m WHERE r.id = m.refund_id AND r.status = 'succeeded'""".replace("{fee}", fee_sql("p.amount_received"))

# A superseded file's settlements are undone: each of its postings gets its contra posting
# (`unsettle:<file>:<line>`, `unrelease:<file>:<merchant>:<currency>`), and what it settled is
# `succeeded` again until the re-issue settles it.
UNSETTLE = """
WITH settled AS (
    SELECT m.file_id, m.line_no, m.payment_id, m.refund_id FROM settlement_matches m
    LEFT JOIN settlement_resolutions r USING (file_id, line_no)
    WHERE m.file_id = ANY($1::bigint[]) AND (m.class = 'matched' OR r.action = 'write_off')
), contra AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT 'unsettle:' || s.file_id || ':' || s.line_no, e.payment_id, e.account, -e.amount, e.currency
    FROM settled s JOIN ledger_entries e ON e.posting_id = 'settle:' || s.file_id || ':' || s.line_no
), releases AS (
    SELECT DISTINCT 'release:' || s.file_id || ':' || p.merchant_id || ':' || p.currency AS posting_id
    FROM settled s JOIN payments p ON p.id = s.payment_id WHERE s.refund_id IS NULL
), contra_releases AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT 'un' || e.posting_id, NULL, e.account, -e.amount, e.currency
    FROM releases r JOIN ledger_entries e ON e.posting_id = r.posting_id
), undone AS (
    UPDATE payments p SET status = 'succeeded', updated_at = now()
    FROM settled s WHERE s.refund_id IS NULL AND p.id = s.payment_id AND p.status = 'settled'
    RETURNING p.id, p.amount_received, p.merchant_id
), undone_events AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, 'payment.settlement_superseded', 'settled', 'succeeded', amount_received FROM undone
), undone_merchant_events AS (
    INSERT INTO events (merchant_id, type, object_id)
    SELECT merchant_id, 'payment.settlement_superseded', id FROM undone
)
UPDATE refunds r SET status = 'succeeded', updated_at = now()
FROM settled s WHERE r.id = s.refund_id AND r.status = 'settled'"""


async def settle(conn: asyncpg.Connection, file_id: int) -> None:
    await conn.execute(SETTLE, file_id)


async def unsettle(conn: asyncpg.Connection, file_ids: list[int]) -> None:
    await conn.execute(UNSETTLE, file_ids)


EXCEPTION_COLUMNS = """m.file_id, m.line_no, m.class, m.payment_id, m.refund_id, m.ours_amount_minor,
    m.theirs_amount_minor, l.rrn, l.transaction_type, l.currency, l.raw, l.interchange_fee_minor, f.network,
    f.file_name, r.action, r.reason, r.actor, r.resolved_at"""


async def list_exceptions(conn: asyncpg.Connection, network: str | None, include_resolved: bool,
                          limit: int) -> list[asyncpg.Record]:
    """Lines of active files that did not match, the open ones only unless `include_resolved`."""
    return await conn.fetch(
        f"SELECT {EXCEPTION_COLUMNS} FROM settlement_matches m JOIN settlement_lines l USING (file_id, line_no) "
        "JOIN settlement_files f ON f.id = m.file_id LEFT JOIN settlement_resolutions r USING (file_id, line_no) "
        "WHERE f.status = 'active' AND m.class <> 'matched' AND ($1::text IS NULL OR f.network = $1) "
        "AND ($2 OR r.action IS NULL) ORDER BY m.file_id, m.line_no LIMIT $3", network, include_resolved, limit)


async def get_exception(conn: asyncpg.Connection, file_id: int, line_no: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {EXCEPTION_COLUMNS}, p.currency AS our_currency FROM settlement_matches m "
        "JOIN settlement_lines l USING (file_id, line_no) JOIN settlement_files f ON f.id = m.file_id "
        "LEFT JOIN settlement_resolutions r USING (file_id, line_no) LEFT JOIN payments p ON p.id = m.payment_id "
        "WHERE m.file_id = $1 AND m.line_no = $2 AND m.class <> 'matched' FOR UPDATE OF m", file_id, line_no)


async def insert_resolution(conn: asyncpg.Connection, file_id: int, line_no: int, action: str, reason: str,
                            actor: str) -> bool:
    status = await conn.execute(
        "INSERT INTO settlement_resolutions (file_id, line_no, action, reason, actor) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT DO NOTHING", file_id, line_no, action, reason, actor)
    return status.endswith(" 1")


async def mark_settled(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """A payment settled by an operator's write-off of its line's difference: its merchant, currency and
    amount received, or None when it was not `succeeded`."""
    updated = await conn.fetchrow("UPDATE payments SET status = 'settled', updated_at = now() WHERE id = $1 AND "
                                  "status = 'succeeded' RETURNING merchant_id, currency, amount_received", payment_id)
    if updated is not None:
        await conn.execute("INSERT INTO payment_events (payment_id, type, from_status, to_status, amount) "
                           "VALUES ($1, 'payment.settled', 'succeeded', 'settled', $2)", payment_id,
                           updated["amount_received"])
        await conn.execute("INSERT INTO events (merchant_id, type, object_id) VALUES ($1, 'payment.settled', $2)",
                           updated["merchant_id"], payment_id)
    return updated


async def known_file_names(conn: asyncpg.Connection | asyncpg.Pool, names: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT file_name FROM settlement_files WHERE file_name = ANY($1::text[])", names)
    return {row["file_name"] for row in rows}
