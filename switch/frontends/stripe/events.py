"""Events in Stripe's shape, for `GET /stripe/v1/events` and for webhook endpoints made through the
Stripe-compatible API: Stripe's event types, `data.object` as a PaymentIntent, Charge or Refund, and the
`Stripe-Signature` header (`t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`, keyed with the endpoint's
whole `whsec_...` secret, as Stripe's SDKs verify it).

Each of our event types maps to one of Stripe's; the ones Stripe has no type for (a settlement, an endpoint
disabled) are not shown here, and an endpoint made here is subscribed to our types underneath.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import asyncpg
import msgspec
from msgspec import Struct

from switch.frontends.http import events_api
from switch.frontends.stripe import render
from switch.payments import outcome as outcomes

API_VERSION = "2025-09-30.clover"

# ours -> Stripe's
TYPES: dict[str, str] = {
    "payment.authorized": "payment_intent.amount_capturable_updated",
    "payment.succeeded": "payment_intent.succeeded",
    "payment.failed": "payment_intent.payment_failed",
    "payment.captured": "charge.captured",
    "payment.canceled": "payment_intent.canceled",
    "refund.created": "refund.created",
    "refund.succeeded": "refund.updated",
    "refund.failed": "refund.failed",
    "review.opened": "review.opened",
    "review.closed": "review.closed",
    "payout.created": "payout.created",
    "payout.paid": "payout.paid",
    "payout.failed": "payout.failed",
}
OURS: dict[str, str] = {theirs: ours for ours, theirs in TYPES.items()}


class EventData(Struct):
    object: msgspec.Raw


class StripeEvent(Struct):
    id: str
    type: str
    created: int
    data: EventData
    api_version: str = API_VERSION
    pending_webhooks: int = 0
    livemode: bool = False
    object: str = "event"


_encoder = msgspec.json.Encoder()


def ours(types: list[str]) -> list[str]:
    """Stripe event types (or ["*"]) as ours, for the delivery queue; ValueError names one we do not send."""
    if types == ["*"]:
        return sorted(TYPES)
    unknown = [name for name in types if name not in OURS]
    if unknown:
        raise ValueError(unknown[0])
    return sorted({OURS[name] for name in types})


def theirs(types: list[str]) -> list[str]:
    return ["*"] if sorted(types) == sorted(TYPES) else sorted(TYPES[name] for name in types if name in TYPES)


def _object(row: Any, now: dict[str, asyncpg.Record]) -> bytes:
    kind = row["type"].split(".", 1)[0]
    if kind in ("payout", "review") or row["data"] is None:
        return events_api.rendered_object(row, now)          # the same shape in both APIs
    outcome = outcomes.decode(row["data"])
    if kind == "refund":
        assert outcome.refund is not None
        return _encoder.encode(render.refund(outcome.refund))
    assert outcome.payment is not None
    if row["type"] == "payment.captured":
        return _encoder.encode(render.charge(outcome.payment))
    return _encoder.encode(render.intent(outcome.payment))


async def stripe_events(pool: asyncpg.Pool, rows: list[Any]) -> list[StripeEvent]:
    """The rows Stripe has a type for, as Stripe's events."""
    shown = [row for row in rows if row["type"] in TYPES]
    now = await events_api.objects_now(pool, shown)
    return [StripeEvent(events_api.event_id(row["id"]), TYPES[row["type"]], int(row["created_at"].timestamp()),
                        EventData(msgspec.Raw(_object(row, now)))) for row in shown]


def encode(event: StripeEvent) -> bytes:
    return _encoder.encode(event)


def signature(secret: str, timestamp: int, body: bytes, previous_secret: str | None = None) -> str:
    """Stripe-Signature: one v1 per secret in force (both while a secret is rolled)."""
    signed = b"%d.%s" % (timestamp, body)
    parts = [f"t={timestamp}"]
    for key in (secret, previous_secret):
        if key:
            parts.append("v1=" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)
