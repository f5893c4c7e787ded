"""Captures: the check of one capture against its locked payment. They are group-committed with the refunds'
reservations that arrive with them (switch.payments.changes)."""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

import msgspec

from switch.ledger import postings
from switch.outbox import items
from switch.payments import outcome as outcomes
from switch.payments.locked import Refused
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.states import Event, apply, not_allowed_message
from switch.store import payments as payment_store
from switch.store.records import PaymentRecord


class CaptureRequest(NamedTuple):
    claim: payment_store.Claim
    request_id: str
    amount_to_capture: int | None       # None: all that is capturable


Answer: TypeAlias = tuple[Outcome, bytes]      # the outcome, and its encoding (the key's answer)


def transition(request_id: str, payment: PaymentRecord, event: Event) -> str:
    """The payment's next status on `event`, or Refused when the state machine does not allow it."""
    next_status = apply(payment.status, event)
    if next_status is None:
        raise Refused(Outcome(Result.PAYMENT_UNEXPECTED_STATE, request_id,
                              message=not_allowed_message(payment.status, event)))
    return next_status


def capture_writes(request_id: str, payment: PaymentRecord, amount_to_capture: int | None,
                   idempotency_key: str) -> tuple[payment_store.Captured, Outcome, bytes]:
    """A locked payment's capture: its writes, its outcome and that outcome encoded (the key's answer and
    the merchant event's data); Refused when the payment cannot be captured so."""
    next_status = transition(request_id, payment, Event.CAPTURED)
    amount = amount_to_capture or payment.amount_capturable
    if amount > payment.amount_capturable:
        raise Refused(Outcome(Result.AMOUNT_TOO_LARGE, request_id, message="The amount to capture is larger than "
                              "the amount capturable.", param="amount_to_capture"))
    captured = msgspec.structs.replace(payment, status=next_status, amount_capturable=0, amount_received=amount)
    outcome = Outcome(Result.SUCCEEDED, request_id, payment=captured)
    data = outcomes.encode(outcome)
    writes = payment_store.Captured(
        captured, payment.status, Event.CAPTURED, items.capture_advice(payment, amount),
        postings.capture(payment.id, payment.merchant_id, payment.network, payment.currency, amount),
        "payment.captured", idempotency_key, data)
    return writes, outcome, data


def check(request: CaptureRequest, payment: PaymentRecord) -> tuple[payment_store.Captured, PaymentRecord, Answer]:
    """A capture of a payment its transaction holds, checked as the API answers it; Refused if refused."""
    if payment.review_status == "open":
        raise Refused(Outcome(Result.PAYMENT_IN_REVIEW, request.request_id))
    writes, outcome, data = capture_writes(request.request_id, payment, request.amount_to_capture,
                                           request.claim.idempotency_key)
    return writes, writes.payment, (outcome, data)
