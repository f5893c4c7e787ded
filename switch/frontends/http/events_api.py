"""The merchant API's events (docs/events.md): what happened to a merchant's payments, refunds, reviews and
payouts, newest first, in Stripe's shape.

    GET /v1/events        limit (1-100), starting_after / ending_before (evt_...), type (exact, or a prefix
                          ending in `*`: `payment.*`), created[gte] / created[lte] (Unix seconds)
    GET /v1/events/{id}

`data.object` is the object as the API renders it, as the change left it (from the outcome the change's
statement stored); a settlement's event, written set-based in SQL, renders the payment as it is now.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from msgspec import Struct

from switch.common import errors
from switch.common.http import Response
from switch.frontends.http import render, schema
from switch.frontends.http.balance_api import PayoutObject
from switch.merchants import Merchant
from switch.payments import outcome as outcomes
from switch.store import events as event_store
from switch.store.records import PaymentRecord, payment_record

log = logging.getLogger(__name__)

API_VERSION = "2026-12-01"
_EVENT_ID = re.compile(r"^evt_([0-9]{16})$")
_EVENT = re.compile(r"^/v1/events/(evt_[0-9]{16})$")
_TYPE = re.compile(r"^[a-z_]{1,40}(\.[a-z_]{1,40}|\.\*)?$")


class EventData(Struct):
    object: msgspec.Raw


class EventObject(Struct):
    id: str
    type: str
    created: int
    data: EventData
    api_version: str = API_VERSION
    livemode: bool = False
    object: str = "event"


_encoder = msgspec.json.Encoder()


def event_id(row_id: int) -> str:
    return f"evt_{row_id:016d}"


def _review(p: PaymentRecord) -> dict[str, Any]:
    fraud = p.fraud
    return {"id": render.review_id(p.id), "object": "review", "payment": p.id, "open": p.review_status == "open",
            "closed_reason": None if p.review_status == "open" else p.review_status,
            "risk_level": fraud.risk_level if fraud else "not_assessed",
            "risk_score": fraud.risk_score if fraud else None, "rule": fraud.rule if fraud else None}


def rendered_object(row: asyncpg.Record, now: dict[str, asyncpg.Record]) -> bytes:
    """The event's object as the API renders it."""
    kind = row["type"].split(".", 1)[0]
    if kind == "webhook_endpoint":                 # written in SQL as the endpoint's JSON
        return bytes(row["data"])
    if kind == "payout":
        return _encoder.encode(msgspec.convert(msgspec.msgpack.decode(row["data"]), PayoutObject))
    if row["data"] is None:                      # written set-based: the payment as it is now
        return _encoder.encode(render.payment_object(payment_record(now[row["object_id"]])))
    outcome = outcomes.decode(row["data"])
    if kind == "refund":
        assert outcome.refund is not None
        return _encoder.encode(render.refund_object(outcome.refund))
    assert outcome.payment is not None
    if kind == "review":
        return _encoder.encode(_review(outcome.payment))
    return _encoder.encode(render.payment_object(outcome.payment))


async def objects_now(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> dict[str, asyncpg.Record]:
    ids = [row["object_id"] for row in rows if row["data"] is None and row["type"].startswith("payment.")]
    return await event_store.current_objects(pool, ids) if ids else {}


async def event_objects(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> list[EventObject]:
    now = await objects_now(pool, rows)
    return [_event_object(row, now) for row in rows]


async def event_objects_or_none(pool: asyncpg.Pool, rows: list[Any]) -> list[EventObject | None]:
    """As event_objects, with None for an event that cannot be rendered (its object gone, its data
    unreadable), so one bad event does not hold up the others."""
    now = await objects_now(pool, rows)
    shown: list[EventObject | None] = []
    for row in rows:
        try:
            shown.append(_event_object(row, now))
        except Exception:  # noqa: BLE001 - whatever is wrong with it, it is this event's alone
            log.warning("event %s (%s) cannot be rendered", event_id(row["id"]), row["type"])
            shown.append(None)
    return shown


def _event_object(row: Any, now: dict[str, asyncpg.Record]) -> EventObject:
    return EventObject(event_id(row["id"]), row["type"], int(row["created_at"].timestamp()),
                       EventData(msgspec.Raw(rendered_object(row, now))))


def _cursor(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not (match := _EVENT_ID.match(value)):
        raise errors.invalid_request("parameter_invalid", f"{name} must be an event id (evt_...).", name)
    return int(match.group(1))


def _type_pattern(params: dict[str, str]) -> str | None:
    value = params.get("type")
    if value is None:
        return None
    if not _TYPE.match(value):
        raise errors.invalid_request("parameter_invalid", "type is an event type (payment.succeeded) or a prefix "
                                     "ending in * (payment.*).", "type")
    return value[:-1] + "%" if value.endswith("*") else value


class EventsApi:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, merchant: Merchant, path: str, query: str) -> tuple[str, Response] | None:
        if path == "/v1/events":
            return "events.list", Response(200, await self._list(merchant, query))
        if match := _EVENT.match(path):
            row = await event_store.get(self.pool, merchant.id, int(match.group(1)[4:]))
            if row is None:
                raise errors.invalid_request("resource_missing", f"No such event: '{match.group(1)}'.", "id",
                                             status=404)
            return "events.get", Response(200, _encoder.encode((await event_objects(self.pool, [row]))[0]))
        return None

    async def _list(self, merchant: Merchant, query: str) -> bytes:
        params = schema.query_params(query)
        listed = schema.list_query(params, cursor=None)       # event ids: _cursor below
        before, after = _cursor(params, "starting_after"), _cursor(params, "ending_before")
        rows = await event_store.list_events(self.pool, merchant.id, before, after, _type_pattern(params),
                                             listed.created_gte, listed.created_lte, listed.limit + 1)
        has_more = len(rows) > listed.limit
        rows = rows[:listed.limit]
        if after is not None:
            rows.reverse()                          # ending_before pages back: still newest first
        return _encoder.encode(render.ListOf(await event_objects(self.pool, rows), has_more, "/v1/events"))
