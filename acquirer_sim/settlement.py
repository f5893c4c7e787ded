"""Settlement files: at a cut-off, one CSV per network of what cleared since the previous cut-off.

Cleared means money moved: a capture (0220/0221), a sale or a refund (0200). Holds that were never
captured and items reversed before the cut-off do not appear; a reversal that arrives after its item
was settled appears in the next file as a negative adjustment. The format is in docs/simulator.md.

The issuer's state is read on the event loop (`Settlement.take`), the file is written elsewhere if the
caller likes (`write` is plain blocking I/O): temp file in the same folder, fsync, then rename, so a
reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from types import MappingProxyType

from acquirer_sim.issuer import Issuer, Transaction, TransactionKey
from switch.common.files import write_atomically

logger = logging.getLogger(__name__)

COLUMNS = (
    "record_type", "network", "rrn", "stan", "terminal_id", "auth_code", "transaction_type", "amount_minor",
    "currency", "transaction_date", "settlement_date", "interchange_fee_minor",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fee:
    """Interchange on a capture or sale: rate_bps of the amount (rounded half up) plus fixed_minor."""

    rate_bps: int
    fixed_minor: int

    def on(self, amount_minor: int) -> int:
        return (amount_minor * self.rate_bps + 5_000) // 10_000 + self.fixed_minor


# The documented per-network fee schedule (docs/simulator.md). Refunds and adjustments carry no fee.
FEES: MappingProxyType[str, Fee] = MappingProxyType(
    {"visa": Fee(150, 10), "mastercard": Fee(175, 12), "generic": Fee(200, 0)}
)


@dataclass(frozen=True, slots=True)
class Row:
    network: str
    rrn: str
    stan: str
    terminal_id: str
    auth_code: str
    transaction_type: str  # capture, sale, refund or adjustment
    amount_minor: int  # Positive: to the merchant; negative: back to the cardholder.
    currency: str
    transaction_date: str  # YYYY-MM-DD (UTC) of the original authorization or sale.
    interchange_fee_minor: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one cut-off settles, for all networks."""

    cut_off_at: datetime
    sequence: int
    rows: dict[str, list[Row]]


def row_for(key: TransactionKey, txn: Transaction, change_minor: int) -> Row:
    """One settlement line for an original whose moved amount changed by `change_minor`."""
    _, terminal_id, stan, _ = key
    first = txn.settled_minor == change_minor  # Nothing of it was settled before this cut-off.
    if txn.kind == "refund":
        amount_minor = -change_minor
    else:
        amount_minor = change_minor
    if not first:
        transaction_type = "adjustment"
    else:
        transaction_type = "capture" if txn.kind == "authorization" else txn.kind
    fee = FEES.get(txn.network)
    fee_minor = fee.on(amount_minor) if fee is not None and first and txn.kind != "refund" else 0
    return Row(
        txn.network, txn.rrn, stan, terminal_id, txn.auth_code or "", transaction_type, amount_minor,
        txn.currency, datetime.fromtimestamp(txn.created_at, UTC).date().isoformat(), fee_minor,
    )  # fmt: skip


def render(network: str, rows: Iterable[Row], cut_off_at: datetime) -> str:
    """The CSV text of one file: header, detail rows (D), one trailer (T) per currency."""
    settlement_date = cut_off_at.date().isoformat()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    totals: dict[str, list[int]] = {}  # currency -> count, debit, credit, fees
    for row in rows:
        writer.writerow((
            "D", row.network, row.rrn, row.stan, row.terminal_id, row.auth_code, row.transaction_type,
            row.amount_minor, row.currency, row.transaction_date, settlement_date, row.interchange_fee_minor,
        ))  # fmt: skip
        total = totals.setdefault(row.currency, [0, 0, 0, 0])
        total[0] += 1
        total[1 if row.amount_minor > 0 else 2] += abs(row.amount_minor)
        total[3] += row.interchange_fee_minor
    cut_off_text = cut_off_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for currency, (count, debit, credit, fees) in sorted(totals.items() or [("", [0, 0, 0, 0])]):
        writer.writerow(("T", network, currency, count, debit, credit, debit - credit, fees, settlement_date,
                         cut_off_text))  # fmt: skip
    return out.getvalue()


# Discrepancies a drill may ask the next file to carry (POST /settlement {"plant": {...}, "seed": n}).
PLANT_KINDS = ("drop", "amount", "duplicate", "unknown", "reversed", "currency")
PLANTED_KEPT = 1_000
PLANT_MAX = 1_000


def plant(rows: dict[str, list[Row]], reversed_items: list[Row], counts: dict[str, int],
          seed: int) -> list[dict[str, str]]:
    """Change `rows` in place as `counts` asks (kind -> how many), on distinct lines picked with `seed`,
    and say what was planted: kind, network, rrn and the line's transaction type."""
    rng = random.Random(seed)
    candidates = [(network, row) for network, network_rows in rows.items() for row in network_rows
                  if row.transaction_type in ("capture", "sale", "refund")]
    rng.shuffle(candidates)
    planted: list[dict[str, str]] = []

    def record(kind: str, network: str, row: Row) -> None:
        planted.append({"kind": kind, "network": network, "rrn": row.rrn, "transaction_type": row.transaction_type})

    for kind in PLANT_KINDS:
        for _ in range(min(counts.get(kind, 0), PLANT_MAX)):
            if kind == "reversed":
                if not reversed_items:
                    break
                row = reversed_items.pop()
                rows.setdefault(row.network, []).append(row)
                record(kind, row.network, row)
                continue
            if not candidates:
                break
            network, row = candidates.pop()
            if kind == "drop":
                rows[network].remove(row)
            elif kind == "amount":
                step = rng.randint(1, 99) * (1 if row.amount_minor > 0 else -1)
                _replace(rows[network], row, replace(row, amount_minor=row.amount_minor + step))
            elif kind == "duplicate":
                rows[network].append(row)
            elif kind == "currency":
                _replace(rows[network], row, replace(row, currency="978" if row.currency != "978" else "840"))
            else:
                row = replace(row, rrn=f"9{rng.randrange(10**11):011d}")
                rows[network].append(row)
            record(kind, network, row)
    return planted


def settled_anyway(key: TransactionKey, txn: Transaction) -> Row:
    """The line a network that missed a reversal would write: the original settled in full."""
    _, terminal_id, stan, _ = key
    fee = FEES.get(txn.network)
    return Row(txn.network, txn.rrn, stan, terminal_id, txn.auth_code or "",
               "capture" if txn.kind == "authorization" else "sale", txn.amount_minor, txn.currency,
               datetime.fromtimestamp(txn.created_at, UTC).date().isoformat(),
               fee.on(txn.amount_minor) if fee is not None else 0)


def _replace(rows: list[Row], old: Row, new: Row) -> None:
    rows[rows.index(old)] = new


class Settlement:
    """Cut-offs for one simulator: on demand (`cut_off`) and daily at `daily_at` UTC (`run_daily`)."""

    def __init__(self, issuer: Issuer, networks: Iterable[str], directory: Path) -> None:
        self.issuer = issuer
        self.networks = tuple(networks)
        self.directory = directory
        self.cut_offs = 0
        self.last_files: list[str] = []
        self.planted: list[dict[str, str]] = []       # the last PLANTED_KEPT discrepancies planted

    def take(self, now: datetime | None = None) -> Batch:
        """Read and mark what cleared since the last cut-off (on the event loop: no I/O)."""
        cut_off_at = now or datetime.now(UTC)
        rows: dict[str, list[Row]] = {name: [] for name in self.networks}
        for key, txn, change_minor in self.issuer.take_unsettled():
            rows.setdefault(txn.network, []).append(row_for(key, txn, change_minor))
        self.cut_offs += 1
        return Batch(cut_off_at, self.cut_offs, rows)

    def write(self, batch: Batch) -> list[Path]:
        """One file per network, e.g. visa-20300506-0001.csv (the sequence counts cut-offs of this run)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = batch.cut_off_at.strftime("%Y%m%d-%H%M%S")
        paths = []
        for network, rows in batch.rows.items():
            path = self.directory / f"{network}-{stamp}-{batch.sequence:04d}.csv"
            write_atomically(path, render(network, rows, batch.cut_off_at), encoding="ascii")
            paths.append(path)
        self.last_files = [str(path) for path in paths]
        return paths

    def cut_off(self, now: datetime | None = None, plan: dict[str, int] | None = None,
                seed: int = 0) -> tuple[list[Path], list[dict[str, str]]]:
        """Cut off now; with `plan`, the files carry the discrepancies it asks for (and say which)."""
        batch = self.take(now)
        planted: list[dict[str, str]] = []
        if plan:
            reversed_items = [settled_anyway(key, txn) for key, txn in self.issuer.reversed_originals()]
            planted = plant(batch.rows, reversed_items, plan, seed)
            for item in planted:
                item["cut_off"] = str(batch.sequence)
            self.planted = (self.planted + planted)[-PLANTED_KEPT:]
        return self.write(batch), planted

    async def run_daily(self, daily_at: time_of_day) -> None:
        """Cut off every day at `daily_at` (UTC) until cancelled; the file writes run in a thread."""
        while True:
            await asyncio.sleep(seconds_until(daily_at, datetime.now(UTC)))
            batch = self.take()
            try:
                await asyncio.to_thread(self.write, batch)
            except OSError as error:
                logger.error("settlement cut-off %d not written: %s", batch.sequence, error)
            await asyncio.sleep(1.0)  # Never twice in the same second.


def seconds_until(daily_at: time_of_day, now: datetime) -> float:
    target = datetime.combine(now.date(), daily_at, UTC)
    if target <= now:
        target += timedelta(days=1)
    return max((target - now).total_seconds(), 0.0)


def parse_daily_at(text: str) -> time_of_day | None:
    """`HH:MM` (UTC), or `off`."""
    if text == "off":
        return None
    parsed = time.strptime(text, "%H:%M")
    return time_of_day(parsed.tm_hour, parsed.tm_min)
