"""The state machines of a payment and of a refund: one table each, one function that applies them.

Statuses use Stripe's words. Every payment transition is written with one payment_events row in the same
transaction (see switch/store/). ``apply`` answers None for a transition the table does not allow: the
caller turns that into its explicit result (``payment_unexpected_state``), never an exception.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"
    SETTLED = "settled"            # the network's settlement file paid it (switch.settlement)


class Event(StrEnum):
    AUTHORIZED = "authorization.approved"        # 0110 approved, manual capture
    SALE_APPROVED = "sale.approved"              # 0210 approved, automatic capture
    DECLINED = "authorization.declined"
    TIMED_OUT = "authorization.timed_out"        # no answer in budget: reversed, never approved
    NETWORK_UNAVAILABLE = "authorization.not_sent"
    BLOCKED = "authorization.blocked"            # the fraud screen blocked it: never sent
    CAPTURED = "payment.captured"
    CANCELED = "payment.canceled"
    REFUND_REQUESTED = "refund.requested"         # status unchanged; amount_refunded reserved
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    SETTLED = "payment.settled"                  # matched in a settlement file
    SETTLEMENT_SUPERSEDED = "payment.settlement_superseded"   # its file was superseded by a re-issue


TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.PROCESSING, Event.AUTHORIZED): Status.REQUIRES_CAPTURE,
    (Status.PROCESSING, Event.SALE_APPROVED): Status.SUCCEEDED,
    (Status.PROCESSING, Event.DECLINED): Status.FAILED,
    (Status.PROCESSING, Event.TIMED_OUT): Status.FAILED,
    (Status.PROCESSING, Event.NETWORK_UNAVAILABLE): Status.FAILED,
    (Status.PROCESSING, Event.BLOCKED): Status.FAILED,
    (Status.REQUIRES_CAPTURE, Event.CAPTURED): Status.SUCCEEDED,
    (Status.REQUIRES_CAPTURE, Event.CANCELED): Status.CANCELED,
    (Status.SUCCEEDED, Event.REFUND_REQUESTED): Status.SUCCEEDED,
    (Status.SUCCEEDED, Event.REFUND_SUCCEEDED): Status.SUCCEEDED,
    (Status.SUCCEEDED, Event.REFUND_FAILED): Status.SUCCEEDED,
    (Status.SUCCEEDED, Event.SETTLED): Status.SETTLED,
    (Status.SETTLED, Event.SETTLEMENT_SUPERSEDED): Status.SUCCEEDED,
    (Status.SETTLED, Event.REFUND_REQUESTED): Status.SETTLED,
    (Status.SETTLED, Event.REFUND_SUCCEEDED): Status.SETTLED,
    (Status.SETTLED, Event.REFUND_FAILED): Status.SETTLED,
}


def apply(status: str, event: Event) -> Status | None:
    """The next status, or None when `event` is not allowed from `status`."""
    return TRANSITIONS.get((Status(status), event))


def not_allowed_message(status: str, event: Event) -> str:
    return f"This payment has a status of {status}; {event.value} is not allowed from it."


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SETTLED = "settled"


class RefundEvent(StrEnum):
    APPROVED = "approved"                    # the network approved the refund's 0200
    DECLINED = "declined"                    # field 39 not 00
    TIMED_OUT = "network_timeout"            # no answer in budget, or recovered: its 0200 is reversed
    NOT_SENT = "network_unavailable"         # no link could take it
    VAULT_FAILED = "vault_unavailable"       # the card could not be read: nothing was sent
    SETTLED = "settled"                      # matched in a settlement file
    SETTLEMENT_SUPERSEDED = "settlement_superseded"


REFUND_TRANSITIONS: dict[tuple[RefundStatus, RefundEvent], RefundStatus] = {
    (RefundStatus.PENDING, RefundEvent.APPROVED): RefundStatus.SUCCEEDED,
    (RefundStatus.PENDING, RefundEvent.DECLINED): RefundStatus.FAILED,
    (RefundStatus.PENDING, RefundEvent.TIMED_OUT): RefundStatus.FAILED,
    (RefundStatus.PENDING, RefundEvent.NOT_SENT): RefundStatus.FAILED,
    (RefundStatus.PENDING, RefundEvent.VAULT_FAILED): RefundStatus.FAILED,
    (RefundStatus.SUCCEEDED, RefundEvent.SETTLED): RefundStatus.SETTLED,
    (RefundStatus.SETTLED, RefundEvent.SETTLEMENT_SUPERSEDED): RefundStatus.SUCCEEDED,
}


def apply_refund(status: str, event: RefundEvent) -> RefundStatus:
    """The refund's next status. Every refund event starts from `pending`, which the store's guarded update
    checks; anything else is a programming error."""
    next_status = REFUND_TRANSITIONS.get((RefundStatus(status), event))
    assert next_status is not None, (status, event)
    return next_status
