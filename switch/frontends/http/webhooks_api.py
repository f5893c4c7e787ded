"""The merchant API's webhook endpoints and an event's deliveries (docs/events.md).

    POST   /v1/webhook_endpoints          {"url", "enabled_events": ["payment.succeeded", ...] or ["*"],
                                           "description"}: the endpoint with its `secret` (shown once)
    GET    /v1/webhook_endpoints          (limit)
    GET    /v1/webhook_endpoints/{id}
    POST   /v1/webhook_endpoints/{id}     {"url", "enabled_events", "description", "disabled"}: any of them
    POST   /v1/webhook_endpoints/{id}/roll_secret   {"expires_in_s": 86400}: a new secret (shown once); the
                                          old one also signs until then
    DELETE /v1/webhook_endpoints/{id}
    GET    /v1/events/{id}/deliveries     every delivery of the event and each of its attempts
"""

from __future__ import annotations

import re
from typing import Annotated

import asyncpg
import msgspec
from msgspec import Meta, Struct

from switch.common import errors
from switch.common.http import Response
from switch.common.ids import new_id
from switch.frontends.http import render, schema
from switch.frontends.webhooks import client, signing
from switch.merchants import Merchant
from switch.store import webhooks as webhook_store

ENDPOINTS_MAX = 16
EVENT_TYPES = ("payment.authorized", "payment.succeeded", "payment.failed", "payment.captured", "payment.canceled",
               "payment.settled", "payment.settlement_superseded", "refund.created", "refund.succeeded",
               "refund.failed", "review.opened", "review.closed", "payout.created", "payout.paid", "payout.failed",
               "webhook_endpoint.disabled")
_ENDPOINT = re.compile(r"^/v1/webhook_endpoints/(we_[0-9A-Za-z]{10,40})$")
_ROLL = re.compile(r"^/v1/webhook_endpoints/(we_[0-9A-Za-z]{10,40})/roll_secret$")
ROLL_OVERLAP_S = 86_400
ROLL_OVERLAP_S_MAX = 7 * 86_400
_DELIVERIES = re.compile(r"^/v1/events/evt_([0-9]{16})/deliveries$")

EventTypes = Annotated[list[Annotated[str, Meta(max_length=60)]], Meta(min_length=1, max_length=len(EVENT_TYPES))]
Url = Annotated[str, Meta(min_length=8, max_length=2048)]
Description = Annotated[str, Meta(max_length=500, pattern=r"^[^\x00]*$")]


class CreateBody(Struct, forbid_unknown_fields=True):
    url: Url
    enabled_events: EventTypes
    description: Description | None = None


class UpdateBody(Struct, forbid_unknown_fields=True):
    url: Url | None = None
    enabled_events: EventTypes | None = None
    description: Description | None = None
    disabled: bool | None = None


class RollBody(Struct, forbid_unknown_fields=True):
    expires_in_s: Annotated[int, Meta(ge=0, le=ROLL_OVERLAP_S_MAX)] = ROLL_OVERLAP_S


class EndpointObject(Struct, omit_defaults=True):
    id: str
    url: str
    enabled_events: list[str]
    description: str | None
    status: str
    disabled_reason: str | None
    created: int
    secret: str | None = None           # only in the answer that created it
    object: str = "webhook_endpoint"


class Deleted(Struct):
    id: str
    deleted: bool = True
    object: str = "webhook_endpoint"


class Attempt(Struct):
    attempted: int
    http_status: int | None
    error: str | None
    latency_ms: int
    excerpt: str | None


class Delivery(Struct):
    id: str
    endpoint: str
    status: str
    attempts: list[Attempt]
    object: str = "webhook_delivery"


_create_decoder = msgspec.json.Decoder(CreateBody)
_update_decoder = msgspec.json.Decoder(UpdateBody)
_roll_decoder = msgspec.json.Decoder(RollBody)
_encoder = msgspec.json.Encoder()


def _endpoint(row: asyncpg.Record, with_secret: bool = False) -> EndpointObject:
    return EndpointObject(row["id"], row["url"], list(row["enabled_events"]), row["description"], row["status"],
                          row["disabled_reason"], int(row["created_at"].timestamp()),
                          row["secret"] if with_secret else None)


def checked_events(types: list[str]) -> list[str]:
    if types == ["*"]:
        return types
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown or "*" in types:
        raise errors.invalid_request("parameter_invalid", f"Unknown event type {(unknown or ['*'])[0]!r}: "
                                     "enabled_events is [\"*\"] or a list of event types.", "enabled_events")
    return sorted(set(types))


def checked_url(url: str, allow_loopback: bool) -> str:
    """A URL the webhooks may send to: http(s), and no literal address in a refused range (a name is
    checked again, after DNS, on every attempt)."""
    try:
        _, host, _, _ = client.check_url(url)
        if re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:.]+\]?", host):
            client.check_address(host.strip("[]"), allow_loopback)
        if host.lower() in ("localhost", "metadata.google.internal") and not allow_loopback:
            raise client.RefusedDestination("the name is a local one")
    except (client.RefusedDestination, ValueError) as refused:
        raise errors.invalid_request("url_invalid", f"The URL cannot be a webhook endpoint: {refused}.",
                                     "url") from None
    return url


class WebhooksApi:
    def __init__(self, pool: asyncpg.Pool, allow_loopback: bool = False) -> None:
        self.pool = pool
        self.allow_loopback = allow_loopback

    async def get(self, merchant: Merchant, path: str, query: str) -> tuple[str, Response] | None:
        if path == "/v1/webhook_endpoints":
            limit = schema.int_param(schema.query_params(query), "limit", 10, 1, 100)
            rows = await webhook_store.list_endpoints(self.pool, merchant.id, limit + 1)
            body = render.ListOf([_endpoint(row) for row in rows[:limit]], len(rows) > limit, path)
            return "webhook_endpoints.list", Response(200, _encoder.encode(body))
        if match := _ENDPOINT.match(path):
            return "webhook_endpoints.get", Response(200, _encoder.encode(_endpoint(await self._found(
                merchant, match.group(1)))))
        if match := _DELIVERIES.match(path):
            return "events.deliveries", Response(200, await self._deliveries(merchant, int(match.group(1)), path))
        return None

    async def post(self, merchant: Merchant, path: str, body: bytes) -> tuple[str, Response] | None:
        if path == "/v1/webhook_endpoints":
            return "webhook_endpoints.create", await self._create(merchant, body)
        if match := _ROLL.match(path):
            roll: RollBody = schema.decode(_roll_decoder, body or b"{}")
            rolled = await webhook_store.roll_secret(self.pool, merchant.id, match.group(1), signing.new_secret(),
                                                     roll.expires_in_s)
            if rolled is None:
                raise _missing(match.group(1))
            return "webhook_endpoints.roll_secret", Response(200, _encoder.encode(_endpoint(rolled, with_secret=True)))
        if match := _ENDPOINT.match(path):
            request: UpdateBody = schema.decode(_update_decoder, body)
            url = checked_url(request.url, self.allow_loopback) if request.url else None
            types = checked_events(request.enabled_events) if request.enabled_events else None
            row = await webhook_store.update_endpoint(self.pool, merchant.id, match.group(1), url, types,
                                                      request.description, request.disabled)
            if row is None:
                raise _missing(match.group(1))
            return "webhook_endpoints.update", Response(200, _encoder.encode(_endpoint(row)))
        return None

    async def delete(self, merchant: Merchant, path: str) -> tuple[str, Response] | None:
        if not (match := _ENDPOINT.match(path)):
            return None
        if not await webhook_store.delete_endpoint(self.pool, merchant.id, match.group(1)):
            raise _missing(match.group(1))
        return "webhook_endpoints.delete", Response(200, _encoder.encode(Deleted(match.group(1))))

    async def _create(self, merchant: Merchant, body: bytes) -> Response:
        request: CreateBody = schema.decode(_create_decoder, body)
        row = await self.create(merchant, request.url, checked_events(request.enabled_events), request.description)
        return Response(200, _encoder.encode(_endpoint(row, with_secret=True)))

    async def create(self, merchant: Merchant, url: str, types: list[str], description: str | None,
                     format_: str = "standard") -> asyncpg.Record:
        """A new endpoint (at most ENDPOINTS_MAX a merchant), its URL checked; the row holds its secret."""
        url = checked_url(url, self.allow_loopback)
        async with self.pool.acquire() as conn, conn.transaction():
            await webhook_store.lock_merchant(conn, merchant.id)
            if await webhook_store.count_endpoints(conn, merchant.id) >= ENDPOINTS_MAX:
                raise errors.invalid_request("endpoints_limit", f"A merchant has at most {ENDPOINTS_MAX} webhook "
                                             "endpoints.")
            return await webhook_store.insert_endpoint(conn, new_id("we"), merchant.id, url, types, description,
                                                       signing.new_secret(), format_)

    async def _found(self, merchant: Merchant, endpoint_id: str) -> asyncpg.Record:
        row = await webhook_store.get_endpoint(self.pool, merchant.id, endpoint_id)
        if row is None:
            raise _missing(endpoint_id)
        return row

    async def _deliveries(self, merchant: Merchant, event_id: int, path: str) -> bytes:
        deliveries: dict[str, Delivery] = {}
        for row in await webhook_store.attempts_of_event(self.pool, merchant.id, event_id):
            endpoint = row["endpoint_id"]                    # one delivery per event and endpoint
            delivery = deliveries.setdefault(endpoint, Delivery(
                f"whd_{event_id}_{endpoint.removeprefix('we_')}", endpoint, row["status"], []))
            if row["attempted_at"] is not None:
                delivery.attempts.append(Attempt(int(row["attempted_at"].timestamp()), row["http_status"],
                                                 row["error"], row["latency_ms"], row["excerpt"]))
        return _encoder.encode(render.ListOf(list(deliveries.values()), False, path))


def _missing(endpoint_id: str) -> errors.ApiError:
    return errors.invalid_request("resource_missing", f"No such webhook endpoint: '{endpoint_id}'.", "id", status=404)
