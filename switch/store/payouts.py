"""Merchant balances (sums of their two ledger accounts) and payouts: the rows, their filing into payout
files and the bank's answer. Every query on a merchant's accounts repeats the predicate of the partial
index `ledger_entries_merchant`, so that prepared (generic) plans can use it."""

from __future__ import annotations

from datetime import date
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_MERCHANT_ACCOUNTS = "starts_with(account, 'merchant:')"     # the partial index's own predicate

PAYOUT_COLUMNS = ("id, merchant_id, currency, amount, status, automatic, scheduled_for, file_name, failure_code, "
                  "created_at, updated_at")


async def balances(conn: Conn, accounts: list[str]) -> list[asyncpg.Record]:
    """What is owed on each of `accounts`, per currency (positive: owed to the merchant)."""
    return await conn.fetch(f"SELECT account, currency, -sum(amount) AS amount FROM ledger_entries "
                            f"WHERE account = ANY($1::text[]) AND {_MERCHANT_ACCOUNTS} GROUP BY account, currency "
                            "ORDER BY currency, account", accounts)


async def balance(conn: Conn, account: str, currency: str) -> int:
    return int(await conn.fetchval(f"SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE account = $1 "
                                   f"AND currency = $2 AND {_MERCHANT_ACCOUNTS}", account, currency))


async def entries(conn: Conn, pending: str, available: str, before_id: int | None, limit: int) -> list[asyncpg.Record]:
    """A merchant's ledger entries, newest first: each account's own index range, merged."""
    one = (f"SELECT id, posting_id, payment_id, account, amount, currency, created_at FROM ledger_entries "
           f"WHERE account = ${{n}} AND {_MERCHANT_ACCOUNTS} AND id < coalesce($3::bigint, 9223372036854775807) "
           "ORDER BY id DESC LIMIT $4")
    return await conn.fetch(f"({one.format(n=1)}) UNION ALL ({one.format(n=2)}) ORDER BY id DESC LIMIT $4",
                            pending, available, before_id, limit)


async def lock_merchant(conn: asyncpg.Connection, merchant_id: str) -> asyncpg.Record | None:
    """Its row, locked to the end of the transaction: payouts of one merchant are made one at a time."""
    return await conn.fetchrow("SELECT id, status, payout_schedule FROM merchants WHERE id = $1 FOR UPDATE",
                               merchant_id)


async def find_by_key(conn: asyncpg.Connection, merchant_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PAYOUT_COLUMNS}, request_hash FROM payouts WHERE merchant_id = $1 "
                               "AND idempotency_key = $2", merchant_id, key)


async def insert_payout(conn: asyncpg.Connection, payout_id: str, merchant_id: str, currency: str, amount: int,
                        scheduled_for: date | None, key: str | None, request_hash: bytes | None) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO payouts (id, merchant_id, currency, amount, automatic, scheduled_for, idempotency_key, "
        f"request_hash) VALUES ($1, $2, $3, $4, $5::date IS NOT NULL, $5::date, $6, $7) RETURNING {PAYOUT_COLUMNS}",
        payout_id, merchant_id, currency, amount, scheduled_for, key, request_hash)


async def scheduled_already(conn: asyncpg.Connection, merchant_id: str, day: date) -> set[str]:
    rows = await conn.fetch("SELECT currency FROM payouts WHERE merchant_id = $1 AND scheduled_for = $2",
                            merchant_id, day)
    return {row["currency"] for row in rows}


async def get_payout(conn: Conn, merchant_id: str | None, payout_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1 AND "
                               "($2::text IS NULL OR merchant_id = $2)", payout_id, merchant_id)


async def list_payouts(conn: Conn, merchant_id: str | None, status: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE ($1::text IS NULL OR merchant_id = $1) "
                            "AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3",
                            merchant_id, status, limit)


async def set_schedule(conn: Conn, merchant_id: str, schedule: str) -> bool:
    status = await conn.execute("UPDATE merchants SET payout_schedule = $2 WHERE id = $1", merchant_id, schedule)
    return status.endswith(" 1")


async def daily_merchants(conn: Conn, limit: int) -> list[str]:
    rows = await conn.fetch("SELECT id FROM merchants WHERE payout_schedule = 'daily' AND status = 'active' "
                            "ORDER BY id LIMIT $1", limit)
    return [row["id"] for row in rows]


async def lock_filing(conn: asyncpg.Connection) -> None:
    """One filing at a time across workers (to the end of the transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('switch.payouts.filing'))")


async def file_pending(conn: asyncpg.Connection, file_name: str, limit: int) -> int:
    """Put up to `limit` pending payouts, oldest first, into the payout file `file_name`: in transit."""
    status = await conn.execute(
        "UPDATE payouts SET status = 'in_transit', file_name = $1, updated_at = now() WHERE id IN ("
        "SELECT id FROM payouts WHERE status = 'pending' ORDER BY created_at, id LIMIT $2 FOR UPDATE)",
        file_name, limit)
    return int(status.split()[-1])


async def file_names_since(conn: Conn, prefix: str) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT file_name FROM payouts WHERE file_name LIKE $1 || '%' ORDER BY 1",
                            prefix)
    return [row["file_name"] for row in rows]


async def unconfirmed_file_names(conn: Conn, limit: int) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT file_name FROM payouts WHERE status = 'in_transit' ORDER BY 1 "
                            "LIMIT $1", limit)
    return [row["file_name"] for row in rows]


async def payouts_in_file(conn: Conn, file_name: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE file_name = $1 ORDER BY created_at, id",
                            file_name)


async def set_outcome(conn: asyncpg.Connection, payout_id: str, status: str,
                      failure_code: str | None) -> asyncpg.Record | None:
    """The bank's answer for a payout in transit; None when it is not in transit (answered already)."""
    return await conn.fetchrow(
        "UPDATE payouts SET status = $2, failure_code = $3, updated_at = now() WHERE id = $1 AND "
        f"status = 'in_transit' RETURNING {PAYOUT_COLUMNS}", payout_id, status, failure_code)
