"""Outcomes as the merchant HTTP API answers them: JSON objects, or Stripe-style error objects whose status,
type and code come from the one result table (switch.payments.results)."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec
from msgspec import Struct

from switch.common.errors import ApiError
from switch.payments.outcome import Listing, Outcome
from switch.payments.results import Result, meaning
from switch.store.records import PaymentRecord, RefundRecord


class CardDetails(Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None = None      # keyed per merchant: the same card gives the same value here only


class PaymentMethodDetails(Struct):
    token: str
    card: CardDetails
    type: str = "card"


class PaymentOutcome(Struct):
    """How the payment was judged, as Stripe's charge `outcome`: by the fraud screen, then the issuer."""

    type: str | None            # authorized | manual_review | blocked | issuer_declined | network_error
    risk_level: str             # normal | elevated | highest | not_assessed
    risk_score: int | None
    rule: str | None
    reasons: tuple[str, ...]


class Payment(Struct):
    """The payment object returned to merchants. Never carries a PAN: brand and last 4 only."""

    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    currency: str
    capture_method: str
    payment_method: PaymentMethodDetails
    network: str
    authorization_code: str | None
    network_response_code: str | None
    decline_code: str | None
    failure_message: str | None
    description: str | None
    statement_descriptor: str | None
    metadata: dict[str, str]
    outcome: PaymentOutcome
    review: str | None           # the review's id (prv_...) when the fraud screen sent it to review
    created: int
    object: str = "payment"


class Refund(Struct):
    id: str
    payment: str
    amount: int
    currency: str
    status: str
    failure_reason: str | None
    created: int
    object: str = "refund"


Item = TypeVar("Item")


class ListOf(Struct, Generic[Item]):
    """Stripe's list envelope, for the lists that have no struct of their own."""

    data: list[Item]
    has_more: bool
    url: str
    object: str = "list"


class PaymentList(Struct):
    data: list[Payment]
    has_more: bool
    url: str = "/v1/payments"
    object: str = "list"


encoder = msgspec.json.Encoder()


def payment_object(p: PaymentRecord) -> Payment:
    return Payment(
        id=p.id, status=p.status, amount=p.amount, amount_capturable=p.amount_capturable,
        amount_received=p.amount_received, amount_refunded=p.amount_refunded, currency=p.currency,
        capture_method=p.capture_method,
        payment_method=PaymentMethodDetails(token=p.card_token, card=CardDetails(
            brand=p.card_brand, last4=p.card_last4, exp_month=p.card_exp_month, exp_year=p.card_exp_year,
            fingerprint=p.card_fingerprint)),
        network=p.network, authorization_code=p.auth_code, network_response_code=p.response_code,
        decline_code=p.decline_code, failure_message=p.failure_message, description=p.description,
        statement_descriptor=p.statement_descriptor, metadata=p.metadata or {}, outcome=outcome_object(p),
        review=review_id(p.id) if p.review_status else None, created=int(p.created_at.timestamp()),
    )


def review_id(payment_id: str) -> str:
    return "prv_" + payment_id.removeprefix("pay_")


def _outcome_type(p: PaymentRecord) -> str | None:
    if p.status == "processing":
        return None
    if p.status == "failed":
        if p.fraud is not None and p.fraud.decision == "block" and p.response_code is None:
            return "blocked"
        return "issuer_declined" if p.response_code else "network_error"
    return "manual_review" if p.review_status else "authorized"


def outcome_object(p: PaymentRecord) -> PaymentOutcome:
    fraud = p.fraud
    if fraud is None:
        return PaymentOutcome(_outcome_type(p), "not_assessed", None, None, ())
    return PaymentOutcome(_outcome_type(p), fraud.risk_level, fraud.risk_score, fraud.rule, fraud.reasons)


def refund_object(r: RefundRecord) -> Refund:
    return Refund(id=r.id, payment=r.payment_id, amount=r.amount, currency=r.currency, status=r.status,
                  failure_reason=r.failure_code, created=int(r.created_at.timestamp()))


def error(outcome: Outcome) -> ApiError:
    m = meaning(outcome.result)
    return ApiError(m.status, m.type, m.code, outcome.message or m.message, param=outcome.param or m.param,
                    decline_code=m.decline_code, payment_id=outcome.payment_id)


def answer_object(outcome: Outcome) -> Payment | Refund | ApiError:
    """What an outcome answers, whatever the front end's encoding: the object, or the error (its status)."""
    if outcome.result is Result.SUCCEEDED or outcome.result is Result.REFUND_FAILED:
        if outcome.refund is not None:
            return refund_object(outcome.refund)
        assert outcome.payment is not None
        return payment_object(outcome.payment)
    return error(outcome)


def answer(outcome: Outcome) -> tuple[int, bytes]:
    """The HTTP status and body of an outcome."""
    answered = answer_object(outcome)
    if isinstance(answered, ApiError):
        return answered.status, answered.body(outcome.request_id)
    return 200, encoder.encode(answered)


def listing(page: Listing) -> bytes:
    return encoder.encode(PaymentList(data=[payment_object(p) for p in page.payments], has_more=page.has_more))
