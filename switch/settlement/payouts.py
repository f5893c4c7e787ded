"""Merchant balances and payouts (docs/settlement.md).

A merchant's balance, per currency, is derived from the ledger: `pending` is its `merchant:<id>:payable`
account (captured, not yet settled, less our fee), `available` its `merchant:<id>:available` account
(released when the network settled, less refunds and payouts). A refund leaves the available balance at
once, so a refund after a payout can make it negative: the negative balance is carried, shown, and
netted from the next settlements before anything more is paid out.

A payout takes an amount from the available balance into `payouts:clearing` (pending); a payout run puts
the pending payouts into a payout file for the bank (in transit); the bank's answer makes it paid (the
clearing account pays out of `bank:payouts`) or failed (the funds are available again). Payouts of one
merchant are made one at a time under a lock of its row, so concurrent requests never pay out more than
is available; a scheduled payout is made once per merchant, currency and business day (a unique key), so
several workers running the schedule at once do its work once.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import msgspec

from switch.common.files import write_atomically
from switch.common.ids import new_id
from switch.ledger import postings
from switch.store import events as event_store
from switch.store import ledger as ledger_store
from switch.store import payouts as payout_store

log = logging.getLogger(__name__)

FILE_PAYOUTS_MAX = 10_000         # payouts per payout file; more wait for the next run
DAILY_MERCHANTS_MAX = 100_000     # merchants on the daily schedule one run pays out
UNCONFIRMED_FILES_MAX = 1_000
FAILURE_CODES = ("account_closed", "account_frozen", "bank_account_restricted", "could_not_process",
                 "insufficient_funds", "invalid_account_number", "no_account")
FILE_COLUMNS = ("payout_id", "merchant_id", "currency", "amount_minor", "created_at")


class PayoutRefused(Exception):
    """A payout that cannot be made or answered so; `code` is the API's error code."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class Balance:
    available: dict[str, int] = field(default_factory=dict)     # currency -> minor units owed
    pending: dict[str, int] = field(default_factory=dict)


async def balance(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str) -> Balance:
    found = Balance()
    available = postings.available_account(merchant_id)
    for row in await payout_store.balances(conn, [postings.pending_account(merchant_id), available]):
        part = found.available if row["account"] == available else found.pending
        part[row["currency"]] = int(row["amount"])
    for currency in found.available.keys() | found.pending.keys():   # both parts for every currency seen
        found.available.setdefault(currency, 0)
        found.pending.setdefault(currency, 0)
    return found


async def request_payout(pool: asyncpg.Pool, merchant_id: str, currency: str, amount: int, key: str,
                         request_hash: bytes) -> tuple[asyncpg.Record, bool]:
    """A payout on request, idempotent by `key`: the payout, and whether it is the replay of an earlier one."""
    async with pool.acquire() as conn, conn.transaction():
        await payout_store.lock_merchant(conn, merchant_id)
        earlier = await payout_store.find_by_key(conn, merchant_id, key)
        if earlier is not None:
            if earlier["request_hash"] != request_hash:
                raise PayoutRefused("idempotency_key_reused", "This Idempotency-Key was used for a different "
                                    "payout.", "Idempotency-Key")
            return earlier, True
        available = await payout_store.balance(conn, postings.available_account(merchant_id), currency)
        if amount > available:
            raise PayoutRefused("balance_insufficient", f"The payout of {amount} exceeds the available balance "
                                f"of {available} {currency}.", "amount")
        return await _book(conn, merchant_id, currency, amount, None, key, request_hash), False


async def _book(conn: asyncpg.Connection, merchant_id: str, currency: str, amount: int, day: date | None,
                key: str | None, request_hash: bytes | None) -> asyncpg.Record:
    row = await payout_store.insert_payout(conn, new_id("po"), merchant_id, currency, amount, day, key, request_hash)
    await ledger_store.insert_entries(conn, postings.payout(row["id"], merchant_id, currency, amount))
    await event_store.insert(conn, merchant_id, "payout.created", row["id"], snapshot(row))
    return row


def public_fields(row: asyncpg.Record) -> dict[str, object]:
    """A payout's fields as the API shows them: the payouts API and the payout events both render these."""
    day = row["scheduled_for"]
    return {"id": row["id"], "amount": row["amount"], "currency": row["currency"], "status": row["status"],
            "automatic": row["automatic"], "scheduled_for": day.isoformat() if day else None,
            "failure_code": row["failure_code"], "created": int(row["created_at"].timestamp()),
            "updated": int(row["updated_at"].timestamp())}


def snapshot(row: asyncpg.Record) -> bytes:
    """A payout as its events carry it (msgpack of its public fields)."""
    return msgspec.msgpack.encode(public_fields(row))


async def schedule_due(pool: asyncpg.Pool, day: date) -> list[asyncpg.Record]:
    """The day's scheduled payouts: every positive available balance of every merchant paid out daily."""
    made = []
    for merchant_id in await payout_store.daily_merchants(pool, DAILY_MERCHANTS_MAX):
        async with pool.acquire() as conn, conn.transaction():
            await payout_store.lock_merchant(conn, merchant_id)
            done = await payout_store.scheduled_already(conn, merchant_id, day)
            for row in await payout_store.balances(conn, [postings.available_account(merchant_id)]):
                if row["currency"] not in done and row["amount"] > 0:
                    made.append(await _book(conn, merchant_id, row["currency"], int(row["amount"]), day, None, None))
    return made


async def file_pending(pool: asyncpg.Pool, directory: Path, day: date) -> Path | None:
    """Put the pending payouts into the day's next payout file and write it; None when none were pending.
    The rows say which file each payout is in before the file is written, so a file lost to a crash in
    between is written again (write_unwritten) and no payout goes into two files."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await payout_store.lock_filing(conn)
            prefix = f"payouts-{day:%Y%m%d}-"
            name = f"{prefix}{len(await payout_store.file_names_since(conn, prefix)) + 1:03d}.csv"
            if not await payout_store.file_pending(conn, name, FILE_PAYOUTS_MAX):
                return None
        return await _write_file(conn, directory, name)


async def write_unwritten(pool: asyncpg.Pool, directory: Path) -> list[Path]:
    """Payout files whose payouts are in transit but which are not on disk (a crash before the write)."""
    written = []
    for name in await payout_store.unconfirmed_file_names(pool, UNCONFIRMED_FILES_MAX):
        if not await asyncio.to_thread((directory / name).exists):
            async with pool.acquire() as conn:
                written.append(await _write_file(conn, directory, name))
    return written


async def _write_file(conn: asyncpg.Connection, directory: Path, name: str) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FILE_COLUMNS)
    for row in await payout_store.payouts_in_file(conn, name):
        writer.writerow((row["id"], row["merchant_id"], row["currency"], row["amount"],
                         row["created_at"].isoformat()))
    path = directory / name
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(write_atomically, path, out.getvalue())
    return path


async def confirm(conn: asyncpg.Connection, payout_id: str, paid: bool, failure_code: str | None) -> asyncpg.Record:
    """The bank's answer for a payout in transit: paid, or failed with one of FAILURE_CODES."""
    if not paid and failure_code not in FAILURE_CODES:
        raise PayoutRefused("parameter_invalid", f"A failed payout's code is one of {', '.join(FAILURE_CODES)}.",
                            "failure_code")
    async with conn.transaction():
        row = await payout_store.set_outcome(conn, payout_id, "paid" if paid else "failed",
                                             None if paid else failure_code)
        if row is None:
            raise PayoutRefused("payout_not_in_transit", f"Payout {payout_id} is not in transit (no such payout, "
                                "not yet filed, or answered already).")
        entries = (postings.payout_paid(payout_id, row["currency"], row["amount"]) if paid else
                   postings.payout_failed(payout_id, row["merchant_id"], row["currency"], row["amount"]))
        await ledger_store.insert_entries(conn, entries)
        await event_store.insert(conn, row["merchant_id"], "payout.paid" if paid else "payout.failed", payout_id,
                                 snapshot(row))
        return row


async def run(pool: asyncpg.Pool, directory: Path, interval_s: float) -> None:
    """The payout job every worker runs when SWITCH_PAYOUTS_DIR is set: once per UTC day the schedule's
    payouts, then on every pass the pending payouts filed and any unwritten file written again."""
    scheduled_day: date | None = None
    while True:
        try:
            day = datetime.now(UTC).date()
            if day != scheduled_day:
                made = await schedule_due(pool, day)
                scheduled_day = day
                log.info("payout schedule for %s: %d payout(s)", day, len(made))
            await write_unwritten(pool, directory)
            if (path := await file_pending(pool, directory, day)) is not None:
                log.info("payout file %s written", path.name)
        except Exception as error:  # noqa: BLE001 - a failed pass is tried again next interval
            log.warning("payout pass failed: %s", error.__class__.__name__)
        await asyncio.sleep(interval_s)
