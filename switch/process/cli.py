"""The `switch` command: run the server, manage merchants and keys, check the ledger.

    switch serve --port 8080 --workers 4       run the merchant API (needs DATABASE_URL, REDIS_URL, ...);
                                               /metrics and /readyz on 127.0.0.1:8081 (--ops-host/--ops-port)
    switch merchants create --name shop        create a merchant; prints its API key once
    switch merchants limit --merchant acct_... --per-s 500 [--burst 1000]   its own rate limit per API key
    switch keys create --merchant acct_...     another API key for a merchant
    switch keys revoke --key key_...           revoke a key (workers stop accepting it within 30 s)
    switch ledger check                        exit 1 if a posting does not sum to zero, or a payment's
                                               capture and fee or a refund's posting is missing or wrong
    switch fraud rules|lists|backtest ...      screening rules, allow and block lists (switch/process/fraud_cli.py)
    switch settlement import --network visa FILE...   import and match settlement files (exit 1: exceptions)
    switch balance --merchant acct_...         a merchant's available and pending balance
    switch payouts run|list|confirm|schedule   payouts (switch/process/payouts_cli.py)
    switch webhooks endpoints|pending|replay   webhook endpoints and deliveries (switch/process/webhooks_cli.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from switch.process import fraud_cli, payouts_cli, settlement_cli, webhooks_cli


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("switch: set DATABASE_URL to the switch database (postgresql://...)")
    return url


async def _with_connection(action):  # type: ignore[no-untyped-def]
    from switch.store.pool import connect

    conn = await connect(_database_url())
    try:
        return await action(conn)
    finally:
        await conn.close()


def cmd_merchants_create(args: argparse.Namespace) -> int:
    from switch.fraud.admin import PRESETS, set_rules
    from switch.fraud.policy import RuleSpec
    from switch.merchants import create_merchant, set_rate_limit
    from switch.process.fraud_cli import _actor

    async def create(conn: asyncpg.Connection):  # type: ignore[no-untyped-def]
        created = await create_merchant(conn, args.name, args.country)
        if args.per_s:
            await set_rate_limit(conn, created.merchant_id, args.per_s, 2 * args.per_s)
        if args.fraud_rules != "default":
            await set_rules(conn, created.merchant_id, [RuleSpec(rule) for rule in PRESETS[args.fraud_rules]], False,
                            _actor())
        return created

    created = asyncio.run(_with_connection(create))
    if args.quiet:
        print(created.api_key)
    else:
        print(f"merchant  {created.merchant_id}  ({args.name})")
        print(f"key id    {created.key_id}")
        print(f"api key   {created.api_key}")
        print("The API key is shown once and stored only as a hash: keep it now.")
    return 0


def cmd_merchants_limit(args: argparse.Namespace) -> int:
    from switch.merchants import set_rate_limit

    per_s = None if args.default else args.per_s
    burst = None if args.default else (args.burst or (2 * args.per_s if args.per_s else None))
    if per_s is None and not args.default:
        sys.exit("switch: give --per-s N (and optionally --burst M), or --default")
    changed = asyncio.run(_with_connection(lambda conn: set_rate_limit(conn, args.merchant, per_s, burst)))
    if not changed:
        print("no such merchant")
        return 1
    print(f"rate limit of {args.merchant}: " + (f"{per_s}/s per API key, burst {burst}" if per_s else "the default")
          + " (workers apply it within 30 s)")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from switch.merchants import create_key

    created = asyncio.run(_with_connection(lambda conn: create_key(conn, args.merchant)))
    print(f"key id    {created.key_id}\napi key   {created.api_key}\nThe API key is shown once.")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from switch.merchants import revoke_key

    revoked = asyncio.run(_with_connection(lambda conn: revoke_key(conn, args.key)))
    print("revoked" if revoked else "no such active key")
    return 0 if revoked else 1


def cmd_ledger_check(args: argparse.Namespace) -> int:
    from switch.ledger.check import check as check_ledger
    from switch.store.ledger import count_postings

    async def check(conn: asyncpg.Connection) -> int:
        problems = await check_ledger(conn)
        total = await count_postings(conn)
        for problem in problems:
            print(problem)
        print(f"ledger: {total} postings, {len(problems)} problems")
        return 1 if problems else 0

    return int(asyncio.run(_with_connection(check)))


def cmd_serve(args: argparse.Namespace) -> int:
    from switch.process.supervisor import Supervisor

    ops_port = args.port + 1 if args.ops_port is None else args.ops_port
    return Supervisor(args.host, args.port, args.workers, args.ops_host, ops_port).run()


def cmd_worker(args: argparse.Namespace) -> int:
    from switch.process.worker import run_worker

    return run_worker(args.host, args.port, args.index, args.ops_host, args.ops_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switch", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the merchant API with N workers on one port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    serve.add_argument("--ops-host", default="127.0.0.1", help="operations endpoints (/metrics, /readyz): "
                       "loopback unless a monitoring network needs them")
    serve.add_argument("--ops-port", type=int, default=None, help="default: --port + 1")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--host", default="127.0.0.1")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--index", type=int, default=0)
    worker.add_argument("--ops-host", default="127.0.0.1")
    worker.add_argument("--ops-port", type=int, required=True)
    worker.set_defaults(func=cmd_worker)
    merchants = sub.add_parser("merchants", help="manage merchants").add_subparsers(dest="action", required=True)
    create = merchants.add_parser("create", help="create a merchant and print its API key once")
    create.add_argument("--name", required=True)
    create.add_argument("--quiet", action="store_true", help="print only the API key")
    create.add_argument("--per-s", type=int, help="its own rate limit per API key (burst: twice that)")
    create.add_argument("--country", default="US", type=str.upper, help="where it trades (ISO 3166 alpha-2)")
    create.add_argument("--fraud-rules", choices=["default", "lists"], default="default",
                        help="its screening rules to start with (docs/fraud.md)")
    create.set_defaults(func=cmd_merchants_create)
    limit = merchants.add_parser("limit", help="set a merchant's rate limit per API key (or back to the default)")
    limit.add_argument("--merchant", required=True)
    limit.add_argument("--per-s", type=int, help="requests per second per API key")
    limit.add_argument("--burst", type=int, help="requests above the rate a key may send at once (default 2 x rate)")
    limit.add_argument("--default", action="store_true", help="use the switch's default limits again")
    limit.set_defaults(func=cmd_merchants_limit)
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create")
    key_create.add_argument("--merchant", required=True)
    key_create.set_defaults(func=cmd_keys_create)
    key_revoke = keys.add_parser("revoke")
    key_revoke.add_argument("--key", required=True)
    key_revoke.set_defaults(func=cmd_keys_revoke)
    ledger = sub.add_parser("ledger", help="ledger checks").add_subparsers(dest="action", required=True)
    ledger.add_parser("check", help="exit 1 if any posting does not balance or match its payment").set_defaults(
        func=cmd_ledger_check)
    fraud_cli.add_parsers(sub)
    settlement_cli.add_parsers(sub)
    payouts_cli.add_parsers(sub)
    webhooks_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
