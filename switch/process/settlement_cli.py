"""`switch settlement import --network visa FILE...`: import and match the networks' settlement files.

Prints a summary per file and writes its report (JSON and CSV) under --reports-dir; exits 1 when a file
left exceptions (lines that did not match), 2 when a file was refused as unreadable.
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
                result = await import_file(conn, args.network, Path(name))
            except (ImportRefused, OSError) as error:
                print(f"{name}: refused: {error}", file=sys.stderr)
                worst = 2
                continue
            paths = report.write(result, Path(args.reports_dir))
            print("\n".join(report.summary_lines(result)))
            print(f"  report: {paths[0]}, {paths[1]}")
            worst = max(worst, 1 if result.exceptions else 0)
        return worst

    return int(asyncio.run(_with_connection(run)))


def add_parsers(sub: Any) -> None:
    settlement = sub.add_parser("settlement", help="import and match the networks' settlement files").add_subparsers(
        dest="action", required=True)
    command = settlement.add_parser("import", help="import settlement files and match every line")
    command.add_argument("--network", required=True, help="the network the files come from")
    command.add_argument("--reports-dir", default="reports/settlement", help="where the reports go")
    command.add_argument("files", nargs="+")
    command.set_defaults(func=cmd_import)
