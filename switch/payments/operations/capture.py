"""Capture (all or part of) an authorization, and cancel one, each in a transaction holding the payment's
row lock (claim the key, check the transition, update, event, outbox row, ledger, answer), after which the
capture advice (0220) or the reversal (0400) is sent from the outbox. Captures share their transaction with
the captures and refunds that arrive with them (switch.payments.changes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from switch.common.batch import BatchQueueFull
from switch.common.failpoints import failpoint
from switch.outbox import items
from switch.payments import captures, merchant_events
from switch.payments import outcome as outcomes
from switch.payments.captures import CaptureRequest
from switch.payments.commands import Cancel, Capture
from switch.payments.context import Context, Services
from switch.payments.locked import NotLocked, Refused
from switch.payments.outcome import Outcome
from switch.payments.pipeline import Operation
from switch.payments.results import Result
from switch.payments.states import Event
from switch.payments.steps import events, idempotency
from switch.store import idempotency as key_store
from switch.store import outbox as outbox_store
from switch.store import payments as payment_store
from switch.store.payments import Claim
from switch.store.pool import transaction
from switch.store.records import PaymentRecord


async def claim_and_lock(conn: asyncpg.Connection, ctx: Context, services: Services, path: str,
                         payment_id: str, param: str = "id") -> PaymentRecord:
    """Claim the idempotency key and lock the payment row, inside the caller's transaction."""
    caller = ctx.caller
    claimed, payment = await payment_store.claim_and_lock(conn, caller.merchant.id, caller.idempotency_key, path,
                                                          caller.fingerprint, payment_id)
    if not claimed:
        raise Refused(None)                 # the key has a row already: answer it, after the rollback
    if payment is None:
        raise Refused(Outcome(Result.RESOURCE_MISSING, caller.request_id, message=f"No such payment: '{payment_id}'",
                              param=param))
    return payment


Answer = TypeVar("Answer")


def transition(ctx: Context, payment: PaymentRecord, event: Event) -> str:
    return captures.transition(ctx.caller.request_id, payment, event)


async def answer_refusal(ctx: Context, services: Services, refused: Refused) -> None:
    """A refusal's outcome, or, for a key that has its row already, that request's outcome."""
    if refused.outcome is None:
        await idempotency.replay_claimed(ctx, services)
    else:
        ctx.outcome = refused.outcome


async def changed(ctx: Context, services: Services, batched: Awaitable[Answer],
                  alone: Callable[[], Awaitable[Answer]]) -> Answer | None:
    """A change's answer once committed: group-committed with those that arrive with it
    (switch.payments.changes), or, when another transaction held the payment, by `alone()`, a transaction
    of its own that waits for the row. None when it was answered instead: refused (and rolled back), or
    the batches' queue full (503 overloaded)."""
    try:
        try:
            return await batched
        except NotLocked:
            return await alone()
    except Refused as refused:
        await answer_refusal(ctx, services, refused)
    except BatchQueueFull:
        ctx.answer(Result.OVERLOADED)
    return None


async def in_transaction(ctx: Context, services: Services,
                         body: Callable[[asyncpg.Connection], Awaitable[tuple[Outcome, bytes]]]) -> None:
    """Run `body(conn)` in one transaction; a refusal rolls it back and becomes the answer."""
    try:
        async with transaction(services.pool) as conn:
            ctx.outcome, ctx.outcome_bytes = await body(conn)
    except Refused as refused:
        await answer_refusal(ctx, services, refused)
        return
    ctx.claimed = True


async def answer(conn: asyncpg.Connection, ctx: Context, payment: PaymentRecord) -> tuple[Outcome, bytes]:
    outcome = Outcome(Result.SUCCEEDED, ctx.caller.request_id, payment=payment)
    data = outcomes.encode(outcome)
    await key_store.update_key_outcome(conn, ctx.caller.merchant.id, ctx.caller.idempotency_key, data, payment.id)
    return outcome, data


async def capture_locked(conn: asyncpg.Connection, ctx: Context, payment: PaymentRecord,
                         amount_to_capture: int | None) -> tuple[Outcome, bytes]:
    """Capture a payment whose row this transaction holds, and answer: the payment, its state change, the
    capture advice, the ledger entries, the merchant event and the key's answer go in one statement."""
    writes, outcome, data = captures.capture_writes(ctx.caller.request_id, payment, amount_to_capture,
                                                    ctx.caller.idempotency_key)
    await payment_store.write_captured(conn, writes)
    return outcome, data


async def cancel_locked(conn: asyncpg.Connection, ctx: Context, payment: PaymentRecord) -> PaymentRecord:
    """Cancel (void) a payment whose row this transaction holds: its event and its reversal."""
    next_status = transition(ctx, payment, Event.CANCELED)
    updated = await payment_store.update_canceled(conn, payment.id, next_status)
    await payment_store.insert_event(conn, payment.id, Event.CANCELED, payment.status, next_status, payment.amount)
    await outbox_store.insert_outbox(conn, items.reversal_of_authorization(payment))
    await merchant_events.payment_changed(conn, "payment.canceled", updated, ctx.caller.request_id)
    return updated


async def capture(ctx: Context, services: Services) -> None:
    """Group-committed with the changes that arrive with it (switch.payments.changes); one at a time, in a
    transaction that waits for the row, when another transaction held the payment."""
    command: Capture = ctx.command
    caller = ctx.caller
    request = CaptureRequest(Claim(caller.merchant.id, caller.idempotency_key,
                                   f"/v1/payments/{command.payment_id}/capture", caller.fingerprint,
                                   command.payment_id), caller.request_id, command.amount_to_capture)
    answer = await changed(ctx, services, services.changes.capture(request),
                           lambda: _capture_waiting(ctx, services, request))
    if answer is None:
        return
    ctx.outcome, ctx.outcome_bytes = answer
    ctx.claimed = True
    failpoint("capture.after_commit")
    services.wake_outbox()


async def _capture_waiting(ctx: Context, services: Services, request: CaptureRequest) -> tuple[Outcome, bytes]:
    async with transaction(services.pool) as conn:
        payment = await claim_and_lock(conn, ctx, services, request.claim.request_path, request.claim.payment_id)
        writes, _, answer = captures.check(request, payment)
        await payment_store.write_captured(conn, writes)
    return answer


async def cancel(ctx: Context, services: Services) -> None:
    command: Cancel = ctx.command

    async def body(conn: asyncpg.Connection) -> tuple[Outcome, bytes]:
        payment = await claim_and_lock(conn, ctx, services, f"/v1/payments/{command.payment_id}/cancel",
                                       command.payment_id)
        return await answer(conn, ctx, await cancel_locked(conn, ctx, payment))

    await in_transaction(ctx, services, body)
    if ctx.claimed:
        failpoint("cancel.after_commit")
        services.wake_outbox()


CAPTURE = Operation("capture", steps=(idempotency.lock, capture), closing=(events.publish, idempotency.close))
CANCEL = Operation("cancel", steps=(idempotency.lock, cancel), closing=(events.publish, idempotency.close))
