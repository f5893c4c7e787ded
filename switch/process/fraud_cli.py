"""`switch fraud ...`: a merchant's screening rules and lists, and backtests of a candidate rule.

    switch fraud rules show --merchant acct_...
    switch fraud rules set --merchant acct_... [--preset default|lists] [--rule 'block if ...']...
                           [--shadow 'review if ...']... [--fail-closed]
    switch fraud lists show --merchant acct_... --list blocklist
    switch fraud lists add|remove --merchant acct_... --list blocklist VALUE...
    switch fraud backtest --merchant acct_... --rule 'block if :amount_usd: > 500' [--since-days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(action: Any) -> Any:
    from switch.process.cli import _with_connection

    return asyncio.run(_with_connection(action))


def cmd_rules_show(args: argparse.Namespace) -> int:
    from switch.fraud.admin import rule_set

    found = _run(lambda conn: rule_set(conn, args.merchant))
    origin = "the defaults" if found.version == 0 else f"by {found.actor} at {found.created_at:%Y-%m-%d %H:%M:%S}"
    print(f"version {found.version} ({origin}), {'fail-closed' if found.fail_closed else 'fail-open'}")
    for index, spec in enumerate(found.rules):
        print(f"  {index:2d}  {spec.rule}{'   [shadow]' if spec.shadow else ''}")
    return 0


def cmd_rules_set(args: argparse.Namespace) -> int:
    from switch.fraud.admin import PRESETS, RuleError, set_rules
    from switch.fraud.policy import RuleSpec

    specs = [RuleSpec(rule) for rule in PRESETS[args.preset]] if args.preset else []
    specs += [RuleSpec(rule) for rule in args.rule or []] + [RuleSpec(rule, True) for rule in args.shadow or []]
    try:
        created = _run(lambda conn: set_rules(conn, args.merchant, specs, args.fail_closed, _actor()))
    except RuleError as error:
        print(f"switch: rule {getattr(error, 'index', 0)}: {error}", file=sys.stderr)
        return 2
    except asyncpg.ForeignKeyViolationError:
        print("no such merchant", file=sys.stderr)
        return 1
    print(f"{args.merchant}: rules version {created.version}, {len(specs)} rules")
    return 0


def cmd_lists_show(args: argparse.Namespace) -> int:
    from switch.store.fraud import get_list

    for row in _run(lambda conn: get_list(conn, args.merchant, args.list)):
        print(f"{row['value']}\t{row['actor']}\t{row['created_at']:%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_lists_change(args: argparse.Namespace) -> int:
    from switch.fraud.admin import add_to_list, remove_from_list

    change = add_to_list if args.action == "add" else remove_from_list

    async def apply(conn: asyncpg.Connection) -> int:
        changed = 0
        for value in args.values:
            changed += await change(conn, args.merchant, args.list, value, _actor())
        return changed
    try:
        changed = _run(apply)
    except ValueError as error:
        print(f"switch: {error}", file=sys.stderr)
        return 2
    print(f"@{args.list}: {changed} {'added' if args.action == 'add' else 'removed'}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from switch.fraud.backtest import backtest
    from switch.fraud.rules import RuleError

    since = datetime.now(UTC) - timedelta(days=args.since_days)
    try:
        result = _run(lambda conn: backtest(conn, args.merchant, args.rule, since))
    except RuleError as error:
        print(f"switch: {error}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    return 0


def add_parsers(sub: Any) -> None:
    fraud = sub.add_parser("fraud", help="fraud screening: rules, lists, backtests").add_subparsers(
        dest="area", required=True)
    rules = fraud.add_parser("rules", help="a merchant's rules").add_subparsers(dest="action", required=True)
    show = rules.add_parser("show")
    show.add_argument("--merchant", required=True)
    show.set_defaults(func=cmd_rules_show)
    change = rules.add_parser("set", help="a new version of the merchant's rules")
    change.add_argument("--merchant", required=True)
    change.add_argument("--preset", choices=["default", "lists"], help="start from a named rule set")
    change.add_argument("--rule", action="append", help="a live rule (repeatable)")
    change.add_argument("--shadow", action="append", help="a rule in shadow mode: counted, never acted on")
    change.add_argument("--fail-closed", action="store_true", help="block when the screen cannot run")
    change.set_defaults(func=cmd_rules_set)
    lists = fraud.add_parser("lists", help="allow and block lists").add_subparsers(dest="action", required=True)
    for action in ("show", "add", "remove"):
        parser = lists.add_parser(action)
        parser.add_argument("--merchant", required=True)
        parser.add_argument("--list", required=True)
        if action == "show":
            parser.set_defaults(func=cmd_lists_show)
        else:
            parser.add_argument("values", nargs="+")
            parser.set_defaults(func=cmd_lists_change)
    test = fraud.add_parser("backtest", help="run a candidate rule over the merchant's past payments")
    test.add_argument("--merchant", required=True)
    test.add_argument("--rule", required=True)
    test.add_argument("--since-days", type=float, default=30.0)
    test.set_defaults(func=cmd_backtest)
