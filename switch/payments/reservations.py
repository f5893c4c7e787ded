"""Refund reservations: the check of one refund against its locked payment (the amount reserved on it, the
pending refund written). They ride the captures' group commit (switch.payments.changes)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, TypeAlias

import msgspec

from switch.common.ids import new_id
from switch.payments import outcome as outcomes
from switch.payments.captures import transition
from switch.payments.locked import Refused
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.states import Event, RefundStatus
from switch.payments.trace import Trace
from switch.store import refunds as refund_store
from switch.store.payments import Claim
from switch.store.records import PaymentRecord, RefundRecord


class RefundRequest(NamedTuple):
    claim: Claim
    request_id: str
    amount: int | None                  # None: all that remains refundable
    trace: Trace                        # the refund's 0200 trace numbers
    now: datetime
    transmitted_at: str                 # field 7 of the 0200
    deadline_at: datetime               # after this, recovery fails and reverses it


Reserved: TypeAlias = tuple[PaymentRecord, RefundRecord]    # the payment as found, and the pending refund


def refundable(request_id: str, payment: PaymentRecord, asked: int | None) -> int:
    """The amount to refund: `asked`, or all that remains; Refused when nothing or less than that remains."""
    remaining = payment.amount_received - payment.amount_refunded
    amount = asked or remaining
    if remaining <= 0:
        raise Refused(Outcome(Result.CHARGE_ALREADY_REFUNDED, request_id))
    if amount > remaining:
        raise Refused(Outcome(Result.AMOUNT_TOO_LARGE, request_id, message=f"The refund amount is larger "
                              f"than the {remaining} that remains refundable.", param="amount"))
    return amount


def check(request: RefundRequest, payment: PaymentRecord
          ) -> tuple[refund_store.Reservation, PaymentRecord, Reserved]:
    """A refund of a payment its transaction holds, checked as the API answers it; Refused if refused."""
    transition(request.request_id, payment, Event.REFUND_REQUESTED)
    amount = refundable(request.request_id, payment, request.amount)
    created = RefundRecord(id=new_id("re"), payment_id=payment.id, merchant_id=request.claim.merchant_id,
                           amount=amount, currency=payment.currency, status=RefundStatus.PENDING.value,
                           failure_code=None, created_at=request.now)
    trace = request.trace
    reservation = refund_store.Reservation(
        created, payment.status, Event.REFUND_REQUESTED, trace.terminal_id, trace.stan, trace.rrn,
        request.transmitted_at, request.deadline_at, request.claim.idempotency_key,
        outcomes.encode(Outcome(Result.SUCCEEDED, request.request_id, refund=created)))
    reserved = msgspec.structs.replace(payment, amount_refunded=payment.amount_refunded + amount)
    return reservation, reserved, (payment, created)

