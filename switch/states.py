"""The payment state machine: one table, one function that applies it.

Statuses use Stripe's words. Every transition is written with one payment_events row in the same
transaction (see switch/store.py and switch/payments.py).
"""

from __future__ import annotations

from enum import StrEnum

from switch.common import errors


class Status(StrEnum):
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


class Event(StrEnum):
    AUTHORIZED = "authorization.approved"        # 0110 approved, manual capture
    SALE_APPROVED = "sale.approved"              # 0210 approved, automatic capture
    DECLINED = "authorization.declined"
    TIMED_OUT = "authorization.timed_out"        # no answer in budget: reversed, never approved
    NETWORK_UNAVAILABLE = "authorization.not_sent"
    CAPTURED = "payment.captured"
    CANCELED = "payment.canceled"
    REFUND_REQUESTED = "refund.requested"         # status unchanged; amount_refunded reserved
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"


TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.PROCESSING, Event.AUTHORIZED): Status.REQUIRES_CAPTURE,
    (Status.PROCESSING, Event.SALE_APPROVED): Status.SUCCEEDED,
    (Status.PROCESSING, Event.DECLINED): Status.FAILED,
    (Status.PROCESSING, Event.TIMED_OUT): Status.FAILED,
    (Status.PROCESSING, Event.NETWORK_UNAVAILABLE): Status.FAILED,
    (Status.REQUIRES_CAPTURE, Event.CAPTURED): Status.SUCCEEDED,
    (Status.REQUIRES_CAPTURE, Event.CANCELED): Status.CANCELED,
    (Status.SUCCEEDED, Event.REFUND_REQUESTED): Status.SUCCEEDED,
    (Status.SUCCEEDED, Event.REFUND_SUCCEEDED): Status.SUCCEEDED,
    (Status.SUCCEEDED, Event.REFUND_FAILED): Status.SUCCEEDED,
}


def apply(status: str, event: Event) -> Status:
    """The next status, or a 400 `payment_unexpected_state` naming what was attempted and from where."""
    next_status = TRANSITIONS.get((Status(status), event))
    if next_status is None:
        raise errors.ApiError(400, "invalid_request_error", "payment_unexpected_state",
                              f"This payment has a status of {status}; {event.value} is not allowed from it.")
    return next_status
