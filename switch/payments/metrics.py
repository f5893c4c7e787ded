"""Payments by operation, network and result: the approval rate, the declines by reason, the fraud blocks and
the idempotency conflicts all read from this one counter. Labels are fixed sets (the operations, the
configured networks, the result enum), never a merchant or a payment id."""

from __future__ import annotations

from prometheus_client import Counter

from switch.common.metrics import FlushedCounts
from switch.payments.commands import (
    ApproveReview,
    Authorize,
    Cancel,
    Capture,
    ConfirmDraft,
    Mutation,
    Refund,
    RejectReview,
)
from switch.payments.outcome import Outcome
from switch.store.records import PaymentRecord

payments = Counter("switch_payments_total", "Payment commands answered (replays not counted), by operation, "
                   "network (none: refused before a network was chosen) and result", ["operation", "network", "result"])

recovered = Counter("switch_recovery_resolved_total", "Payments and refunds found in flight past their deadline "
                    "(their worker died) and failed and reversed by recovery")

OPERATION_NAMES: dict[type, str] = {Authorize: "authorize", ConfirmDraft: "authorize", Capture: "capture",
                                    Cancel: "cancel", Refund: "refund", ApproveReview: "approve_review",
                                    RejectReview: "reject_review"}
_counts = FlushedCounts(payments)


def observe(command: Mutation, outcome: Outcome, acted_on: PaymentRecord | None) -> None:
    """`acted_on`: the payment the command worked on, where the outcome does not carry it (a refund's)."""
    payment = outcome.payment or acted_on
    network = payment.network if payment is not None and payment.network else "none"
    _counts.add((OPERATION_NAMES.get(type(command), "other"), network, outcome.result.value))
