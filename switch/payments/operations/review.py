"""Close a fraud review: approve (the payment goes on; one the merchant wanted captured at once is
captured now) or reject (canceled and reversed). One transaction each, under the request's idempotency
key, with the review's audit row (who and when: the API key's merchant)."""

from __future__ import annotations

import asyncpg

from switch.fraud.signals import unpack_signals
from switch.payments import merchant_events
from switch.payments.commands import ApproveReview, RejectReview
from switch.payments.context import Context, Services
from switch.payments.operations.capture import (
    Refused,
    answer,
    cancel_locked,
    capture_locked,
    claim_and_lock,
    in_transaction,
)
from switch.payments.outcome import Outcome
from switch.payments.pipeline import Operation
from switch.payments.results import Result
from switch.payments.steps import events, idempotency
from switch.store import fraud as fraud_store
from switch.store.records import PaymentRecord


async def _close(conn: asyncpg.Connection, ctx: Context, services: Services, payment_id: str,
                 action: str) -> PaymentRecord:
    payment = await claim_and_lock(conn, ctx, services, f"/v1/reviews/{payment_id}/{action}", payment_id)
    closed = await fraud_store.update_review(conn, ctx.caller.merchant.id, payment.id,
                                             "approved" if action == "approve" else "rejected",
                                             f"api:{ctx.caller.merchant.id}")
    if closed is None or payment.status != "requires_capture":
        raise Refused(Outcome(Result.RESOURCE_MISSING, ctx.caller.request_id, param="id",
                              message=f"No open review for payment '{payment_id}'"))
    await merchant_events.payment_changed(conn, "review.closed", closed, ctx.caller.request_id)
    return closed


async def approve(ctx: Context, services: Services) -> None:
    command: ApproveReview = ctx.command

    async def body(conn: asyncpg.Connection) -> tuple[Outcome, bytes]:
        payment = await _close(conn, ctx, services, command.payment_id, "approve")
        if unpack_signals(await fraud_store.get_signals(conn, payment.id)).get("capture_method") == "automatic":
            return await capture_locked(conn, ctx, payment, None)
        return await answer(conn, ctx, payment)

    await in_transaction(ctx, services, body)
    if ctx.claimed:
        services.wake_outbox()


async def reject(ctx: Context, services: Services) -> None:
    command: RejectReview = ctx.command

    async def body(conn: asyncpg.Connection) -> tuple[Outcome, bytes]:
        payment = await _close(conn, ctx, services, command.payment_id, "reject")
        return await answer(conn, ctx, await cancel_locked(conn, ctx, payment))

    await in_transaction(ctx, services, body)
    if ctx.claimed:
        services.wake_outbox()


APPROVE = Operation("review.approve", steps=(idempotency.lock, approve), closing=(events.publish, idempotency.close))
REJECT = Operation("review.reject", steps=(idempotency.lock, reject), closing=(events.publish, idempotency.close))
