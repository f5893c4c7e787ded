"""`switch webhooks`: the operators' view of webhook deliveries.

    switch webhooks pending [--merchant acct_...]          deliveries waiting, per endpoint, oldest first
    switch webhooks replay --event evt_...                 deliver an event again to its endpoints
    switch webhooks replay --endpoint we_... --since 2026-12-01T00:00:00Z
                                                           every event of an endpoint since then, again
                                                           (and those it missed while disabled)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any


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
    pending = webhooks.add_parser("pending", help="deliveries waiting, per endpoint")
    pending.add_argument("--merchant")
    pending.set_defaults(func=cmd_pending)
    again = webhooks.add_parser("replay", help="deliver events again")
    again.add_argument("--event")
    again.add_argument("--endpoint")
    again.add_argument("--since", help="with --endpoint: events from this time (ISO 8601)")
    again.set_defaults(func=cmd_replay)
