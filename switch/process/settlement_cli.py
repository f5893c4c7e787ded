"""`switch settlement import --network visa FILE...`: import and match the networks' settlement files.
Prints a summary per file and writes its report (JSON and CSV) under --reports-dir; exits 1 when a file
left exceptions (lines that did not match), 2 when a file was refused as unreadable.

    switch settlement exceptions list [--network visa] [--all]    open exceptions; exit 1 while any remain
    switch settlement exceptions show --file N --line L
    switch settlement exceptions resolve --file N --line L --action acknowledge|dispute|write_off --reason '...'
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg


def cmd_import(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.settlement import report
    from switch.settlement.imports import ImportRefused, import_file

    async def run(conn: asyncpg.Connection) -> int:
        worst = 0
        for name in args.files:
            try:
                result = await import_file(conn, args.network, Path(name), args.missing_after_days)
            except (ImportRefused, OSError) as error:
                print(f"{name}: refused: {error}", file=sys.stderr)
                worst = 2
                continue
            paths = await report.write(conn, result, Path(args.reports_dir))
            print("\n".join(report.summary_lines(result)))
            print(f"  report: {paths[0]}, {paths[1]}")
            worst = max(worst, 1 if result.exceptions else 0)
        return worst

    return int(asyncio.run(_with_connection(run)))


def _describe(row: Any) -> str:
    resolution = (f"  {row['action']} by {row['actor']} at {row['resolved_at']:%Y-%m-%d %H:%M:%S}: {row['reason']}"
                  if row["action"] else "  open")
    return (f"file {row['file_id']} line {row['line_no']}  {row['class']}  {row['network']} rrn {row['rrn']} "
            f"{row['transaction_type']}  ours {row['ours_amount_minor']} theirs {row['theirs_amount_minor']} "
            f"payment {row['payment_id'] or '-'}\n{resolution}")


def cmd_exceptions_list(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.settlement import list_exceptions

    rows = asyncio.run(_with_connection(lambda conn: list_exceptions(conn, args.network, args.all, 10_000)))
    for row in rows:
        print(_describe(row))
    still_open = sum(1 for row in rows if row["action"] is None)
    print(f"{still_open} open exception(s)")
    return 1 if still_open else 0


def cmd_exceptions_show(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.settlement import get_exception

    async def show(conn: asyncpg.Connection) -> Any:
        async with conn.transaction():
            return await get_exception(conn, args.file, args.line)
    row = asyncio.run(_with_connection(show))
    if row is None:
        print(f"no exception at file {args.file} line {args.line}", file=sys.stderr)
        return 1
    print(_describe(row))
    print(f"  line as sent: {row['raw']}")
    return 0


def cmd_exceptions_resolve(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.process.fraud_cli import _actor
    from switch.settlement.exceptions import ResolutionRefused, resolve

    try:
        row = asyncio.run(_with_connection(
            lambda conn: resolve(conn, args.file, args.line, args.action, args.reason, _actor())))
    except ResolutionRefused as error:
        print(f"switch: {error}", file=sys.stderr)
        return 2
    print(_describe(row))
    return 0


def add_parsers(sub: Any) -> None:
    settlement = sub.add_parser("settlement", help="import and match the networks' settlement files").add_subparsers(
        dest="action", required=True)
    command = settlement.add_parser("import", help="import settlement files and match every line")
    command.add_argument("--network", required=True, help="the network the files come from")
    command.add_argument("--reports-dir", default="reports/settlement", help="where the reports go")
    command.add_argument("--missing-after-days", type=float, default=2.0,
                         help="how long the network may take to settle an item before it is missing_in_theirs")
    command.add_argument("files", nargs="+")
    command.set_defaults(func=cmd_import)
    exceptions = settlement.add_parser("exceptions", help="the lines that did not match").add_subparsers(
        dest="what", required=True)
    listing = exceptions.add_parser("list", help="open exceptions (exit 1 while any remain)")
    listing.add_argument("--network")
    listing.add_argument("--all", action="store_true", help="resolved ones too")
    listing.set_defaults(func=cmd_exceptions_list)
    for name, func in (("show", cmd_exceptions_show), ("resolve", cmd_exceptions_resolve)):
        parser = exceptions.add_parser(name)
        parser.add_argument("--file", type=int, required=True)
        parser.add_argument("--line", type=int, required=True)
        if name == "resolve":
            parser.add_argument("--action", required=True, choices=["acknowledge", "dispute", "write_off"])
            parser.add_argument("--reason", required=True)
        parser.set_defaults(func=func)
