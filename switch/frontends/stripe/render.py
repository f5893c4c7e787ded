"""Outcomes as Stripe's objects: PaymentIntent, Charge, Refund, PaymentMethod, lists and errors, in the
shapes the official SDKs read. A payment is one PaymentIntent (`pi_X` for `pay_X`) with one Charge
(`ch_X`); its vault token is its PaymentMethod (`pm_X` for `tok_X`). Brand and last 4 only, never a PAN.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from switch.common.errors import ApiError
from switch.frontends.http.render import outcome_object, review_id
from switch.frontends.stripe.params import CreateIntent
from switch.payments.outcome import Outcome
from switch.payments.results import Result, meaning
from switch.store.customers import CustomerRecord, SavedCard
from switch.store.drafts import DraftRecord
from switch.store.records import PaymentRecord, RefundRecord

encoder = msgspec.json.Encoder()
EXPANDABLE = frozenset({"latest_charge", "payment_intent", "charge", "payment_method"})


def intent_id(payment_id: str) -> str:
    return "pi_" + payment_id.removeprefix("pay_")


def charge_id(payment_id: str) -> str:
    return "ch_" + payment_id.removeprefix("pay_")


def method_id(token: str) -> str:
    return "pm_" + token.removeprefix("tok_")


class Card(Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None
    funding: str | None = None
    country: str | None = None
    network: str | None = None


class PaymentMethod(Struct):
    id: str
    card: Card
    created: int
    customer: str | None = None
    billing_details: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    livemode: bool = False
    type: str = "card"
    object: str = "payment_method"


class Customer(Struct):
    id: str
    email: str | None
    name: str | None
    description: str | None
    metadata: dict[str, str]
    created: int
    livemode: bool = False
    object: str = "customer"


class ChargeOutcome(Struct):
    type: str
    network_status: str
    risk_level: str
    risk_score: int | None
    rule: str | None
    reason: str | None
    seller_message: str


class ChargeCard(Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None
    network: str
    authorization_code: str | None


class ChargeMethodDetails(Struct):
    card: ChargeCard
    type: str = "card"


class Charge(Struct):
    id: str
    amount: int
    amount_captured: int
    amount_refunded: int
    captured: bool
    currency: str
    status: str
    paid: bool
    refunded: bool
    payment_intent: Any
    payment_method: str
    payment_method_details: ChargeMethodDetails
    outcome: ChargeOutcome
    failure_code: str | None
    failure_message: str | None
    description: str | None
    statement_descriptor: str | None
    metadata: dict[str, str]
    created: int
    authorization_code: str | None
    review: str | None = None
    livemode: bool = False
    object: str = "charge"


class PaymentError(Struct):
    type: str
    code: str
    message: str
    decline_code: str | None = None
    charge: str | None = None
    param: str | None = None


class PaymentIntent(Struct):
    id: str
    amount: int
    amount_capturable: int
    amount_received: int
    currency: str
    status: str
    capture_method: str
    confirmation_method: str
    latest_charge: Any
    last_payment_error: PaymentError | None
    payment_method: Any
    payment_method_types: list[str]
    description: str | None
    statement_descriptor: str | None
    metadata: dict[str, str]
    created: int
    canceled_at: int | None
    cancellation_reason: str | None
    review: str | None
    client_secret: str | None = None
    customer: str | None = None
    next_action: None = None
    livemode: bool = False
    object: str = "payment_intent"


class StripeRefund(Struct):
    id: str
    amount: int
    charge: Any
    payment_intent: Any
    currency: str
    status: str
    reason: str | None
    failure_reason: str | None
    created: int
    metadata: dict[str, str] = {}
    object: str = "refund"


class StripeList(Struct):
    data: list[Any]
    has_more: bool
    url: str
    object: str = "list"


def intent_status(p: PaymentRecord) -> str:
    """Stripe's PaymentIntent status of a payment: a failed one may be tried again with another card."""
    if p.status == "failed":
        return "requires_payment_method"
    if p.status == "settled":
        return "succeeded"
    return p.status      # processing, requires_capture, succeeded, canceled: the same words


def _charge_status(p: PaymentRecord) -> str:
    return {"failed": "failed", "processing": "pending"}.get(p.status, "succeeded")


def _payment_error(p: PaymentRecord) -> PaymentError | None:
    if p.status != "failed":
        return None
    code = "card_declined" if p.response_code or p.decline_code == "fraudulent" else "processing_error"
    return PaymentError("card_error" if code == "card_declined" else "api_error", code,
                        p.failure_message or "The payment failed.", p.decline_code, charge_id(p.id))


def charge(p: PaymentRecord, expand: frozenset[str] = frozenset()) -> Charge:
    screened = outcome_object(p)
    network_status = {"failed": "declined_by_network" if p.response_code else "not_sent_to_network",
                      "processing": "pending"}.get(p.status, "approved_by_network")
    if screened.type == "blocked":
        network_status = "not_sent_to_network"
    captured = p.status in ("succeeded", "settled")
    return Charge(
        id=charge_id(p.id), amount=p.amount, amount_captured=p.amount_received, amount_refunded=p.amount_refunded,
        captured=captured, currency=p.currency, status=_charge_status(p), paid=p.status not in ("failed", "processing"),
        refunded=captured and p.amount_refunded >= p.amount_received > 0,
        payment_intent=intent(p) if "payment_intent" in expand else intent_id(p.id),
        payment_method=method_id(p.card_token),
        payment_method_details=ChargeMethodDetails(ChargeCard(
            p.card_brand, p.card_last4, p.card_exp_month, p.card_exp_year, p.card_fingerprint, p.network,
            p.auth_code)),
        outcome=ChargeOutcome(
            type=screened.type or "authorized", network_status=network_status, risk_level=screened.risk_level,
            risk_score=screened.risk_score, rule=screened.rule, reason=p.decline_code,
            seller_message="Payment complete." if p.status != "failed" else (p.failure_message or "Declined.")),
        failure_code=("card_declined" if p.response_code or p.decline_code == "fraudulent" else "processing_error")
        if p.status == "failed" else None,
        failure_message=p.failure_message if p.status == "failed" else None, description=p.description,
        statement_descriptor=p.statement_descriptor, metadata=p.metadata or {},
        created=int(p.created_at.timestamp()), authorization_code=p.auth_code,
        review=review_id(p.id) if p.review_status else None)


def intent(p: PaymentRecord, expand: frozenset[str] = frozenset()) -> PaymentIntent:
    created = int(p.created_at.timestamp())
    return PaymentIntent(
        id=intent_id(p.id), amount=p.amount, amount_capturable=p.amount_capturable,
        amount_received=p.amount_received, currency=p.currency, status=intent_status(p),
        capture_method=p.capture_method, confirmation_method="automatic",
        latest_charge=charge(p) if "latest_charge" in expand else charge_id(p.id),
        last_payment_error=_payment_error(p),
        payment_method=payment_method(p) if "payment_method" in expand else method_id(p.card_token),
        payment_method_types=["card"], description=p.description, statement_descriptor=p.statement_descriptor,
        metadata=p.metadata or {}, created=created, canceled_at=created if p.status == "canceled" else None,
        cancellation_reason=None, review=review_id(p.id) if p.review_status else None)


def draft_intent(draft: DraftRecord) -> PaymentIntent:
    """A PaymentIntent not confirmed yet."""
    asked = msgspec.msgpack.decode(draft.params, type=CreateIntent)
    status = "canceled" if draft.canceled else "requires_confirmation" if draft.payment_method \
        else "requires_payment_method"
    created = int(draft.created_at.timestamp())
    return PaymentIntent(
        id=intent_id(draft.id), amount=draft.amount, amount_capturable=0, amount_received=0, currency=draft.currency,
        status=status, capture_method="manual" if asked.capture_method == "manual" else "automatic",
        confirmation_method=asked.confirmation_method or "automatic", latest_charge=None, last_payment_error=None,
        payment_method=draft.payment_method, payment_method_types=["card"], description=asked.description,
        statement_descriptor=asked.statement_descriptor, metadata=asked.metadata or {}, created=created,
        canceled_at=created if draft.canceled else None, cancellation_reason=None, review=None)


def payment_method(p: PaymentRecord) -> PaymentMethod:
    return PaymentMethod(id=method_id(p.card_token), card=Card(
        p.card_brand, p.card_last4, p.card_exp_month, p.card_exp_year, p.card_fingerprint, network=p.network),
        created=int(p.created_at.timestamp()))


class WebhookEndpoint(Struct):
    id: str
    url: str
    enabled_events: list[str]
    description: str | None
    status: str
    created: int
    api_version: str
    secret: str | None = None          # in the answer that made it only
    metadata: dict[str, str] = {}
    livemode: bool = False
    object: str = "webhook_endpoint"


class DeletedEndpoint(Struct):
    id: str
    deleted: bool = True
    object: str = "webhook_endpoint"


def customer(c: CustomerRecord) -> Customer:
    return Customer(c.id, c.email, c.name, c.description, c.metadata or {}, int(c.created_at.timestamp()))


def saved_method(card: SavedCard) -> PaymentMethod:
    shown = Card(card.brand, card.last4, card.exp_month, card.exp_year, card.fingerprint)
    return PaymentMethod(id=method_id(card.token), card=shown, created=int(card.created_at.timestamp()),
                         customer=card.customer_id)


_REFUND_STATUSES = {"requested": "pending", "pending": "pending", "succeeded": "succeeded", "failed": "failed"}


def refund(r: RefundRecord, payment: PaymentRecord | None = None, expand: frozenset[str] = frozenset()) -> StripeRefund:
    return StripeRefund(
        id=r.id, amount=r.amount,
        charge=charge(payment) if payment is not None and "charge" in expand else charge_id(r.payment_id),
        payment_intent=intent(payment) if payment is not None and "payment_intent" in expand
        else intent_id(r.payment_id), currency=r.currency, status=_REFUND_STATUSES.get(r.status, r.status),
        reason=None, failure_reason=r.failure_code, created=int(r.created_at.timestamp()))


def error(outcome: Outcome, expand: frozenset[str] = frozenset()) -> tuple[int, bytes]:
    """Stripe's error object; a card error carries the PaymentIntent and its charge, as Stripe's does."""
    m = meaning(outcome.result)
    body: dict[str, Any] = {
        "type": m.type, "code": _STRIPE_CODES.get(m.code, m.code), "message": _message(outcome, m.message),
        "param": _param(outcome.param or m.param), "request_log_url": None, "doc_url": None}
    if m.decline_code:
        body["decline_code"] = m.decline_code
    payment = outcome.payment
    if payment is not None:
        body["payment_intent"] = intent(payment, expand)
        body["charge"] = charge_id(payment.id)
        body["payment_method"] = payment_method(payment)
    return m.status, encoder.encode({"error": body})


# Our codes where Stripe's differ.
_STRIPE_CODES = {"idempotency_key_reused": "idempotency_key_in_use", "payment_unexpected_state":
                 "payment_intent_unexpected_state"}


def _param(param: str | None) -> str | None:
    """Our card data's place (payment_method[card][...]) under its Stripe name."""
    if param is not None and param.startswith("payment_method[card]"):
        return "payment_method_data" + param.removeprefix("payment_method")
    return param


def _message(outcome: Outcome, default: str) -> str:
    message = outcome.message or default
    for ours, theirs in (("No such payment: 'pay_", "No such payment_intent: 'pi_"),):
        message = message.replace(ours, theirs)
    return message


def api_error(error_: ApiError) -> bytes:
    body: dict[str, Any] = {"type": error_.type, "code": error_.code, "message": error_.message,
                            "param": error_.param, "doc_url": None}
    if error_.decline_code:
        body["decline_code"] = error_.decline_code
    return encoder.encode({"error": body})


def answer(outcome: Outcome, expand: frozenset[str] = frozenset()) -> tuple[int, bytes]:
    if outcome.result is Result.SUCCEEDED or outcome.result is Result.REFUND_FAILED:
        if outcome.refund is not None:
            return 200, encoder.encode(refund(outcome.refund, outcome.payment, expand))
        assert outcome.payment is not None
        return 200, encoder.encode(intent(outcome.payment, expand))
    return error(outcome, expand)
