"""The switch's objects as typed models (msgspec structs): payments, refunds, events. Unknown fields are
ignored, so a newer switch does not break an older SDK."""

from __future__ import annotations

from typing import Any

import msgspec


class Card(msgspec.Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None = None


class PaymentMethod(msgspec.Struct):
    token: str
    card: Card
    type: str = "card"


class Outcome(msgspec.Struct):
    type: str | None
    risk_level: str
    risk_score: int | None = None
    rule: str | None = None
    reasons: list[str] = []


class Payment(msgspec.Struct):
    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    currency: str
    capture_method: str
    payment_method: PaymentMethod
    created: int
    network: str | None = None
    authorization_code: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    description: str | None = None
    metadata: dict[str, str] = {}
    outcome: Outcome | None = None
    review: str | None = None
    object: str = "payment"


class Refund(msgspec.Struct):
    id: str
    payment: str
    amount: int
    currency: str
    status: str
    created: int
    failure_reason: str | None = None
    object: str = "refund"


class Event(msgspec.Struct):
    id: str
    type: str
    created: int
    data: dict[str, Any]
    api_version: str | None = None
    object: str = "event"


def convert(value: Any, kind: type[Any]) -> Any:
    return msgspec.convert(value, kind, strict=False)
