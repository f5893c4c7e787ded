"""The one fail-and-reverse step. A payment or refund that got no answer in time, whose link was lost
after sending, or whose worker died mid-flight (found by recovery), is failed, answered for its idempotency
key, and - when its request may have reached the network - reversed, all in one transaction. A late answer
finds the payment already failed and its reversal queued, so a late approval can never stand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

import asyncpg
import msgspec

from switch.ledger import postings
from switch.outbox import items
from switch.payments import outcome as outcomes
from switch.payments.context import Context, Services
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.states import Event, RefundEvent, RefundStatus, Status, apply, apply_refund
from switch.payments.steps.idempotency import answer_stored
from switch.store import payments as payment_store
from switch.store import refunds as refund_store
from switch.store.records import OutboxItem, PaymentRecord, RefundRecord

FAILURES = {Event.TIMED_OUT: "network_timeout", Event.NETWORK_UNAVAILABLE: "network_unavailable"}


async def fail_payment(conn: asyncpg.Connection | asyncpg.Pool, payment: PaymentRecord, event: Event,
                       request_id: str, idempotency_key: str | None,
                       result: Result | None = None) -> tuple[Outcome, bytes] | None:
    """Fail `payment` (still `processing`) with `event`; a timed-out one is reversed. The outcome's result
    follows the event unless given. None, writing nothing, when it had already left `processing`."""
    failure = FAILURES[event]
    failed = msgspec.structs.replace(payment, status=apply(Status.PROCESSING, event), failure_message=failure)
    if result is None:
        result = Result.NETWORK_TIMEOUT if event is Event.TIMED_OUT else Result.NETWORK_UNAVAILABLE
    outcome = Outcome(result, request_id, payment=failed, payment_id=payment.id)
    data = outcomes.encode(outcome)
    reversal = items.reversal_of_authorization(payment) if event is Event.TIMED_OUT else None
    if await payment_store.update_failed(conn, payment.id, payment.merchant_id, failure, event, data, reversal,
                                        idempotency_key) is None:
        return None
    return outcome, data


async def not_answered(ctx: Context, services: Services) -> None:
    """Never sent (retryable error) -> failed; maybe sent (timeout, disconnect) -> failed and reversed."""
    assert ctx.payment is not None and ctx.network_error is not None
    sent = not ctx.network_error.retryable
    failed = await fail_payment(services.pool, ctx.payment, Event.TIMED_OUT if sent else Event.NETWORK_UNAVAILABLE,
                                ctx.caller.request_id, ctx.caller.idempotency_key)
    if failed is None:
        await answer_stored(ctx, services)
        return
    ctx.outcome, ctx.outcome_bytes = failed
    if sent:
        services.wake_outbox()


class RefundOf(NamedTuple):
    """What a refund's finish needs of its payment."""

    payment_id: str
    merchant_id: str
    network: str
    currency: str
    status: str = Status.SUCCEEDED      # the payment's, which a refund leaves as it is


async def finish_refund(write: Callable[[refund_store.Finished], Awaitable[bool]], pending: RefundRecord,
                        payment: RefundOf, event: RefundEvent, response_code: str | None, request_id: str,
                        idempotency_key: str, error: Result | None = None, reversal: OutboxItem | None = None,
                        recovering: bool = False) -> tuple[Outcome, bytes] | None:
    """Move a pending refund on with `event`: credited to the ledger when approved, its reservation on the
    payment released otherwise (its 0200 reversed when `reversal` is given), and its idempotency key
    answered, in one statement, written by `write` (the writer's batches, or recovery's transaction). None,
    writing nothing, when the refund is no longer pending (recovery finished it)."""
    status = apply_refund(RefundStatus.PENDING, event)
    succeeded = status is RefundStatus.SUCCEEDED
    refund = msgspec.structs.replace(pending, status=status.value, failure_code=None if succeeded else event.value)
    if error is not None:
        outcome = Outcome(error, request_id)
    else:
        outcome = Outcome(Result.SUCCEEDED if succeeded else Result.REFUND_FAILED, request_id, refund=refund)
    data = outcomes.encode(outcome)
    # The merchant event carries the refund as a success's answer does: the same bytes when it is one.
    event_data = data if outcome.result is Result.SUCCEEDED else outcomes.encode(
        Outcome(Result.SUCCEEDED, request_id, refund=refund))
    written = await write(refund_store.Finished(
        refund, response_code, payment.status,
        Event.REFUND_SUCCEEDED if succeeded else Event.REFUND_FAILED,
        postings.refund(refund.id, payment.payment_id, payment.merchant_id, payment.network, payment.currency,
                        refund.amount) if succeeded else [],
        reversal, "refund.succeeded" if succeeded else "refund.failed",
        event_data, idempotency_key, data, recovering))
    return (outcome, data) if written else None
