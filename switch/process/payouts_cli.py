"""`switch balance` and `switch payouts`: merchants' balances, the payout run and the bank's answers.

    switch balance --merchant acct_...                 available and pending, per currency
    switch payouts run --dir payouts [--date 2026-12-01]   the day's scheduled payouts, then a payout file
                                                       of every pending payout; prints what it did
    switch payouts list [--merchant acct_...] [--status in_transit]
    switch payouts confirm po_... [po_...] --paid      the bank paid them
    switch payouts confirm po_... --failed CODE        the bank returned it (account_closed, ...): the
                                                       funds are available again
    switch payouts schedule --merchant acct_... daily|manual
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg


def _describe(row: Any) -> str:
    filed = f" in {row['file_name']}" if row["file_name"] else ""
    failed = f" ({row['failure_code']})" if row["failure_code"] else ""
    kind = "scheduled" if row["automatic"] else "requested"
    return (f"{row['id']}  {row['merchant_id']}  {row['amount']} {row['currency']}  {row['status']}{failed}  "
            f"{kind}{filed}")


def cmd_balance(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.settlement.payouts import balance

    found = asyncio.run(_with_connection(lambda conn: balance(conn, args.merchant)))
    for currency in sorted(found.available):
        print(f"{currency}  available {found.available[currency]}  pending {found.pending[currency]}")
    if not found.available:
        print("no balance yet")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from switch.process.cli import _database_url
    from switch.settlement import payouts
    from switch.store.pool import create_pool

    day = date.fromisoformat(args.date) if args.date else datetime.now(UTC).date()

    async def run() -> int:
        pool = await create_pool(_database_url(), 2)
        try:
            made = await payouts.schedule_due(pool, day)
            rewritten = await payouts.write_unwritten(pool, Path(args.dir))
            path = await payouts.file_pending(pool, Path(args.dir), day)
        finally:
            await pool.close()
        for row in made:
            print(f"scheduled {_describe(row)}")
        for again in rewritten:
            print(f"payout file written again: {again}")
        print(f"payout file: {path}" if path else "no pending payouts to file")
        return 0

    return asyncio.run(run())


def cmd_list(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.payouts import list_payouts

    rows = asyncio.run(_with_connection(lambda conn: list_payouts(conn, args.merchant, args.status, 10_000)))
    for row in rows:
        print(_describe(row))
    print(f"{len(rows)} payout(s)")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.settlement.payouts import PayoutRefused, confirm

    async def answer(conn: asyncpg.Connection) -> int:
        worst = 0
        for payout_id in args.payouts:
            try:
                row = await confirm(conn, payout_id, args.failed is None, args.failed)
            except PayoutRefused as refused:
                print(f"switch: {refused.message}", file=sys.stderr)
                worst = 2
                continue
            print(_describe(row))
        return worst

    return int(asyncio.run(_with_connection(answer)))


def cmd_schedule(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.payouts import set_schedule

    if not asyncio.run(_with_connection(lambda conn: set_schedule(conn, args.merchant, args.schedule))):
        print(f"switch: no merchant {args.merchant}", file=sys.stderr)
        return 1
    print(f"{args.merchant}: payouts {args.schedule}")
    return 0


def add_parsers(sub: Any) -> None:
    shown = sub.add_parser("balance", help="a merchant's available and pending balance")
    shown.add_argument("--merchant", required=True)
    shown.set_defaults(func=cmd_balance)
    payouts = sub.add_parser("payouts", help="payout runs and the bank's answers").add_subparsers(
        dest="action", required=True)
    run = payouts.add_parser("run", help="the day's scheduled payouts and a payout file of the pending ones")
    run.add_argument("--dir", default="payouts", help="where payout files are written")
    run.add_argument("--date", help="the business day (YYYY-MM-DD; default today, UTC)")
    run.set_defaults(func=cmd_run)
    listing = payouts.add_parser("list")
    listing.add_argument("--merchant")
    listing.add_argument("--status", choices=["pending", "in_transit", "paid", "failed"])
    listing.set_defaults(func=cmd_list)
    confirming = payouts.add_parser("confirm", help="the bank's answer for payouts in transit")
    confirming.add_argument("payouts", nargs="+")
    outcome = confirming.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--paid", action="store_true")
    outcome.add_argument("--failed", metavar="CODE", help="the bank's failure code")
    confirming.set_defaults(func=cmd_confirm)
    schedule = payouts.add_parser("schedule", help="a merchant's payout schedule")
    schedule.add_argument("--merchant", required=True)
    schedule.add_argument("schedule", choices=["daily", "manual"])
    schedule.set_defaults(func=cmd_schedule)
