"""Import one settlement file: once per content (its SHA-256), in one transaction; its raw lines kept; a
corrected re-issue of a cut-off supersedes the earlier file (whose settlements are undone); every detail
line matched, set-based, against captures, sales and refunds; each matched item `settled`, with its
ledger posting; and our items the network had by the cut-off but has not settled for longer than the
grace, reported as missing_in_theirs.

The file is checked before anything is kept: the header must be the documented one, every trailer's
count and totals must add up to its currency's detail lines, and every detail line must name the network
the import was asked for. A file that fails a check is refused whole (ImportRefused), and names why.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg

from switch.common.currency import CURRENCIES
from switch.store import settlement as settlement_store

HEADER = ("record_type,network,rrn,stan,terminal_id,auth_code,transaction_type,amount_minor,currency,"
          "transaction_date,settlement_date,interchange_fee_minor")
DETAIL_FIELDS = 12
TRAILER_FIELDS = 10
EXCEPTIONS = ("amount_mismatch", "missing_in_ours", "duplicate_in_file", "settled_after_reversal",
              "currency_mismatch", "missing_in_theirs")
MISSING_AFTER_DAYS = 2     # how long the network may take to settle an item it had before it is an exception


REPORT_COLUMNS = ("line_no", "class", "rrn", "transaction_type", "payment_id", "refund_id", "ours_amount_minor",
                  "theirs_amount_minor", "currency")
UNMATCHED_LISTED_MAX = 100_000     # exceptions listed in a result (the CSV report has every line)


class ImportRefused(Exception):
    """The file is not a settlement file this import can trust; nothing of it was kept."""


@dataclass(slots=True)
class Imported:
    file_id: int
    network: str
    file_name: str
    already_imported: bool = False
    superseded: list[int] = field(default_factory=list)
    cut_off_at: datetime | None = None
    awaiting: int = 0          # our items the network had, not settled yet, within the grace
    classes: Counter[str] = field(default_factory=Counter)
    lines: list[dict[str, object]] = field(default_factory=list)     # the lines that did not match

    @property
    def exceptions(self) -> int:
        return sum(self.classes[name] for name in EXCEPTIONS)


def check(data: bytes, network: str) -> tuple[datetime | None, date | None, int]:
    """Refuse a file whose header, networks or trailers do not hold; its cut-off, settlement date and line
    count. Reads the file's bytes line by line (no copy of the whole file)."""
    lines = io.BytesIO(data)
    if lines.readline().rstrip(b"\n") != HEADER.encode():
        raise ImportRefused("the first line is not the settlement header")
    totals: dict[str, list[int]] = {}
    cut_off_at, settlement_date = None, None
    number = 1
    for number, raw in enumerate(lines, start=2):
        try:
            line = raw.rstrip(b"\n").decode("ascii")
        except UnicodeDecodeError:
            raise ImportRefused(f"line {number}: not ASCII") from None
        fields = line.split(",")
        try:
            if fields[0] == "D":
                _detail(fields, network, totals)
            elif fields[0] == "T":
                if len(fields) != TRAILER_FIELDS:
                    raise ImportRefused(f"a trailer has {TRAILER_FIELDS} fields")
                if fields[2]:
                    count, debit, credit = totals.pop(fields[2], [0, 0, 0])
                    if [count, debit, credit] != [int(fields[3]), int(fields[4]), int(fields[5])]:
                        raise ImportRefused("the trailer's count or totals do not add up")
                settlement_date = date.fromisoformat(fields[8])
                cut_off_at = datetime.fromisoformat(fields[9].replace("Z", "+00:00"))
            else:
                raise ImportRefused(f"unknown record type {fields[0][:3]!r}")
        except ValueError:
            raise ImportRefused(f"line {number}: a number or a date that does not read") from None
        except ImportRefused as refused:
            raise ImportRefused(f"line {number}: {refused}") from None
    if totals:
        raise ImportRefused(f"detail lines in {sorted(totals)} have no trailer")
    return cut_off_at, settlement_date, number


def _detail(fields: list[str], network: str, totals: dict[str, list[int]]) -> None:
    """Check one detail line's fields (everything the SQL casts) and add it to its currency's totals."""
    if len(fields) != DETAIL_FIELDS or fields[1] != network:
        raise ImportRefused(f"not a {network} detail line of {DETAIL_FIELDS} fields")
    amount = int(fields[7])
    int(fields[11])
    date.fromisoformat(fields[9])
    if not (fields[2].isascii() and fields[2].isdigit() and fields[8].isascii() and fields[8].isdigit()):
        raise ImportRefused("the RRN and the currency are digits")
    total = totals.setdefault(fields[8], [0, 0, 0])
    total[0] += 1
    total[1 if amount >= 0 else 2] += abs(amount)


async def import_file(conn: asyncpg.Connection, network: str, path: Path,
                      missing_after_days: float = MISSING_AFTER_DAYS) -> Imported:
    """Import and match `path` (idempotent by content); the result, with every line's class. Our items the
    network had by the cut-off, that no file settled within `missing_after_days`, are reported as this
    file's missing_in_theirs lines."""
    data = await asyncio.to_thread(path.read_bytes)
    cut_off_at, settlement_date, line_count = check(data, network)
    sha256 = hashlib.sha256(data).digest()
    async with conn.transaction():
        await settlement_store.lock_network(conn, network)
        known = await settlement_store.find_file(conn, network, sha256)
        if known is not None:
            result = Imported(known["id"], network, path.name, already_imported=True)
        else:
            file_id = await settlement_store.insert_file(conn, network, path.name, sha256, line_count)
            await settlement_store.stage_lines(conn, data)
            await settlement_store.insert_lines(conn, file_id)
            await settlement_store.set_cut_off(conn, file_id, cut_off_at, settlement_date)
            result = Imported(file_id, network, path.name)
            if cut_off_at is not None:
                result.superseded = await settlement_store.supersede(conn, network, cut_off_at, file_id)
                if result.superseded:
                    await settlement_store.unsettle(conn, result.superseded)
            alpha = list(CURRENCIES)
            numeric = [CURRENCIES[code].numeric for code in alpha]
            await settlement_store.match(conn, file_id, alpha, numeric)
            await settlement_store.settle(conn, file_id)
            await settlement_store.resolve_settled_late(conn, file_id)
            if cut_off_at is not None:
                result.awaiting = await settlement_store.flag_missing(
                    conn, file_id, network, cut_off_at, timedelta(days=missing_after_days), alpha, numeric)
        result.cut_off_at = cut_off_at
        for row in await settlement_store.class_counts(conn, result.file_id):
            result.classes[row["class"]] = row["count"]
        for row in await settlement_store.unmatched(conn, result.file_id, UNMATCHED_LISTED_MAX):
            result.lines.append({key: row[key] for key in REPORT_COLUMNS})
    return result
