"""Capture (all or part of) an authorization, and cancel one, after which the capture advice (0220) or the
reversal (0400) is sent from the outbox.

A cancel is one transaction holding the payment's row lock (claim the key, check the transition, update,
event, outbox row, answer). A capture takes no lock: it reads the payment and whether its key was used,
works the capture out, and writes it (the key's claim included) in one statement that applies only if the
payment is still as read; if it changed meanwhile, the capture reads it again. Two round trips where the
transaction took four (BEGIN, claim and lock, write, COMMIT): 281 µs of the switch's CPU a capture, measured
per step in a bench of the mix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from switch.common.failpoints import failpoint
from switch.ledger import postings
from switch.outbox import items
from switch.payments import merchant_events
from switch.payments import outcome as outcomes
from switch.payments.commands import Cancel, Capture
from switch.payments.context import Context, Services
from switch.payments.outcome import Outcome
from switch.payments.pipeline import Operation
from switch.payments.results import Result
from switch.payments.states import Event, apply, not_allowed_message
from switch.payments.steps import events, idempotency
from switch.store import idempotency as key_store
from switch.store import outbox as outbox_store
from switch.store import payments as payment_store
from switch.store.pool import transaction
from switch.store.records import PaymentRecord


class Refused(Exception):
    """Raised inside the operation's transaction to roll it back; caught at its edge and answered."""

    def __init__(self, outcome: Outcome | None) -> None:
        super().__init__()
        self.outcome = outcome


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


def transition(ctx: Context, payment: PaymentRecord, event: Event) -> str:
    next_status = apply(payment.status, event)
    if next_status is None:
        raise Refused(Outcome(Result.PAYMENT_UNEXPECTED_STATE, ctx.caller.request_id,
                              message=not_allowed_message(payment.status, event)))
    return next_status


async def answer_refusal(ctx: Context, services: Services, refused: Refused) -> None:
    """A refusal's outcome, or, for a key that has its row already, that request's outcome."""
    if refused.outcome is None:
        await idempotency.replay_claimed(ctx, services)
    else:
        ctx.outcome = refused.outcome


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


CAPTURE_READS_MAX = 5          # a payment changed under a capture this often: answered 503, retry


def captured(ctx: Context, payment: PaymentRecord, amount_to_capture: int | None) -> payment_store.Captured:
    """A capture of `payment` as read, worked out: the payment it leaves, its writes and its answer."""
    next_status = transition(ctx, payment, Event.CAPTURED)
    amount = amount_to_capture or payment.amount_capturable
    if amount > payment.amount_capturable:
        raise Refused(Outcome(Result.AMOUNT_TOO_LARGE, ctx.caller.request_id, message="The amount to capture "
                              "is larger than the amount capturable.", param="amount_to_capture"))
    after = msgspec.structs.replace(payment, status=next_status, amount_capturable=0, amount_received=amount)
    data = outcomes.encode(Outcome(Result.SUCCEEDED, ctx.caller.request_id, payment=after))  # and the event's
    return payment_store.Captured(
        after, payment, Event.CAPTURED, items.capture_advice(payment, amount),
        postings.capture(payment.id, payment.merchant_id, payment.network, payment.currency, amount),
        "payment.captured", ctx.caller.idempotency_key, data)


async def capture_locked(conn: asyncpg.Connection, ctx: Context, payment: PaymentRecord,
                         amount_to_capture: int | None) -> tuple[Outcome, bytes]:
    """Capture a payment whose row this transaction holds (its key claimed already), and answer."""
    writes = captured(ctx, payment, amount_to_capture)
    written = await payment_store.write_captured(conn, writes)
    assert written, "a payment changed under its row lock"
    return Outcome(Result.SUCCEEDED, ctx.caller.request_id, payment=writes.payment), writes.outcome


async def cancel_locked(conn: asyncpg.Connection, ctx: Context, payment: PaymentRecord) -> PaymentRecord:
    """Cancel (void) a payment whose row this transaction holds: its event and its reversal."""
    next_status = transition(ctx, payment, Event.CANCELED)
    updated = await payment_store.update_canceled(conn, payment.id, next_status)
    await payment_store.insert_event(conn, payment.id, Event.CANCELED, payment.status, next_status, payment.amount)
    await outbox_store.insert_outbox(conn, items.reversal_of_authorization(payment))
    await merchant_events.payment_changed(conn, "payment.canceled", updated, ctx.caller.request_id)
    return updated


async def capture(ctx: Context, services: Services) -> None:
    for _ in range(CAPTURE_READS_MAX):
        try:
            if not await _capture_as_read(ctx, services):
                continue                            # the payment changed since it was read
        except Refused as refused:
            await answer_refusal(ctx, services, refused)
            return
        ctx.claimed = True
        failpoint("capture.after_commit")
        services.wake_outbox()
        return
    ctx.answer(Result.OVERLOADED)


async def _capture_as_read(ctx: Context, services: Services) -> bool:
    """Read the payment, capture it as read; False when it changed before the write (nothing written)."""
    command: Capture = ctx.command
    caller = ctx.caller
    used, payment = await payment_store.get_with_key(services.pool, caller.merchant.id, caller.idempotency_key,
                                                     command.payment_id)
    if used:
        raise Refused(None)                         # the key has a row already: answer it
    if payment is None:
        raise Refused(Outcome(Result.RESOURCE_MISSING, caller.request_id,
                              message=f"No such payment: '{command.payment_id}'", param="id"))
    if payment.review_status == "open":
        raise Refused(Outcome(Result.PAYMENT_IN_REVIEW, caller.request_id))
    writes = captured(ctx, payment, command.amount_to_capture)
    claim = payment_store.KeyClaim(f"/v1/payments/{command.payment_id}/capture", caller.fingerprint)
    try:
        if not await payment_store.write_captured(services.pool, writes, claim):
            return False
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name != "idempotency_keys_pkey":
            raise
        raise Refused(None) from None               # another request claimed the key since the read
    ctx.outcome = Outcome(Result.SUCCEEDED, caller.request_id, payment=writes.payment)
    ctx.outcome_bytes = writes.outcome
    return True


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
