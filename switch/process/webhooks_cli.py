"""`switch webhooks`: the operators' view of webhook deliveries.

    switch webhooks endpoints list --merchant acct_...
    switch webhooks endpoints create --merchant acct_... --url https://... [--events payment.succeeded,...]
                                                           prints the endpoint and its secret (once)
    switch webhooks endpoints disable|enable|delete --merchant acct_... --endpoint we_...
    switch webhooks pending [--merchant acct_...]          deliveries waiting, per endpoint, oldest first
    switch webhooks replay --event evt_...                 deliver an event again to its endpoints
    switch webhooks replay --endpoint we_... --since 2026-12-01T00:00:00Z
                                                           every event of an endpoint since then, again
                                                           (and those it missed while disabled)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime
from typing import Any


def _describe(row: Any) -> str:
    reason = f" ({row['disabled_reason']})" if row["disabled_reason"] else ""
    return f"{row['id']}  {row['status']}{reason}  {','.join(row['enabled_events'])}  {row['url'][:100]}"


def cmd_endpoints(args: argparse.Namespace) -> int:
    from switch.common.errors import ApiError
    from switch.common.ids import new_id
    from switch.frontends.http.webhooks_api import ENDPOINTS_MAX, checked_events, checked_url
    from switch.frontends.webhooks.signing import new_secret
    from switch.process.cli import _with_connection
    from switch.store import webhooks as webhook_store

    async def run(conn: Any) -> int:
        if args.what == "list":
            for row in await webhook_store.list_endpoints(conn, args.merchant, 100):
                print(_describe(row))
            return 0
        if args.what == "create":
            url = checked_url(args.url, allow_loopback=os.environ.get("SWITCH_WEBHOOKS_ALLOW_LOOPBACK") == "1")
            events = checked_events(args.events.split(","))
            async with conn.transaction():
                await webhook_store.lock_merchant(conn, args.merchant)
                if await webhook_store.count_endpoints(conn, args.merchant) >= ENDPOINTS_MAX:
                    print(f"switch: a merchant has at most {ENDPOINTS_MAX} webhook endpoints", file=sys.stderr)
                    return 2
                row = await webhook_store.insert_endpoint(conn, new_id("we"), args.merchant, url, events, None,
                                                          new_secret())
            print(_describe(row))
            print(f"secret (shown once): {row['secret']}")
            return 0
        if args.what == "delete":
            done = await webhook_store.delete_endpoint(conn, args.merchant, args.endpoint)
        else:
            done = await webhook_store.update_endpoint(conn, args.merchant, args.endpoint, None, None, None,
                                                       args.what == "disable") is not None
        print(f"{args.endpoint}: {args.what}d" if done else f"switch: no endpoint {args.endpoint}",
              file=sys.stdout if done else sys.stderr)
        return 0 if done else 1

    try:
        return int(asyncio.run(_with_connection(run)))
    except ApiError as error:
        print(f"switch: {error.message}", file=sys.stderr)
        return 2


def cmd_pending(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.webhooks import pending_by_endpoint

    rows = asyncio.run(_with_connection(lambda conn: pending_by_endpoint(conn, args.merchant)))
    for row in rows:
        print(f"{row['id']}  {row['merchant_id']}  {row['status']}  {row['pending']} pending, oldest "
              f"{row['oldest']:%Y-%m-%d %H:%M:%S}  {row['url'][:80]}")
    print(f"{sum(row['pending'] for row in rows)} pending deliveries")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from switch.process.cli import _with_connection
    from switch.store.webhooks import replay

    if bool(args.event) == bool(args.endpoint):
        print("switch: replay one --event, or one --endpoint (with --since)", file=sys.stderr)
        return 2
    event_id = None
    if args.event:
        if not (args.event.startswith("evt_") and args.event[4:].isdigit()):
            print("switch: --event is an event id (evt_...)", file=sys.stderr)
            return 2
        event_id = int(args.event[4:])
    since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) if args.since else None
    queued = asyncio.run(_with_connection(lambda conn: replay(conn, event_id, args.endpoint, since)))
    print(f"{queued} deliveries queued again")
    return 0 if queued else 1


def add_parsers(sub: Any) -> None:
    webhooks = sub.add_parser("webhooks", help="webhook deliveries: pending, replay").add_subparsers(
        dest="action", required=True)
    endpoints = webhooks.add_parser("endpoints", help="a merchant's webhook endpoints")
    endpoints.add_argument("what", choices=["list", "create", "disable", "enable", "delete"])
    endpoints.add_argument("--merchant", required=True)
    endpoints.add_argument("--url", help="create: where the events go")
    endpoints.add_argument("--events", default="*", help="create: event types, comma-separated, or *")
    endpoints.add_argument("--endpoint", help="disable, enable, delete: the endpoint (we_...)")
    endpoints.set_defaults(func=cmd_endpoints)
    pending = webhooks.add_parser("pending", help="deliveries waiting, per endpoint")
    pending.add_argument("--merchant")
    pending.set_defaults(func=cmd_pending)
    again = webhooks.add_parser("replay", help="deliver events again")
    again.add_argument("--event")
    again.add_argument("--endpoint")
    again.add_argument("--since", help="with --endpoint: events from this time (ISO 8601)")
    again.set_defaults(func=cmd_replay)
