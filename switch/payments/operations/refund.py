"""Refunds: one or more partial refunds of a captured payment, each an online 0200 (processing code 20).

The refund amount is reserved on the payment (``amount_refunded``) under the payment's row lock before the
network is asked, so concurrent refunds can never exceed what was captured. A decline releases the
reservation; no answer in time releases it too and queues a reversal of the refund's 0200.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg

from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint
from switch.iso import messages
from switch.iso.codes import ResultCode, result_for_field39
from switch.iso.messages import PROCESSING_CODE_REFUND
from switch.outbox import items
from switch.payments import reservations
from switch.payments.commands import Refund
from switch.payments.context import Context, Services
from switch.payments.operations.capture import changed, claim_and_lock
from switch.payments.pipeline import Operation
from switch.payments.reservations import RefundRequest
from switch.payments.results import Result
from switch.payments.states import RefundEvent
from switch.payments.steps import events, idempotency, send
from switch.payments.steps.card import vault_result
from switch.payments.steps.fail import RefundOf, finish_refund
from switch.store import refunds as refund_store
from switch.store.payments import Claim
from switch.store.pool import transaction
from switch.store.records import PaymentRecord
from switch.vault_protocol import VaultError


def _refund_of(payment: PaymentRecord) -> RefundOf:
    return RefundOf(payment.id, payment.merchant_id, payment.network, payment.currency, payment.status)


async def reserve(ctx: Context, services: Services) -> None:
    """Claim the key, check and reserve the amount, and write the pending refund, in one transaction:
    group-committed with the captures and refunds that arrive with it (switch.payments.changes), or one at a
    time, waiting for the row, when another transaction held the payment."""
    command: Refund = ctx.command
    caller = ctx.caller
    ctx.trace = trace = await services.traces.next()
    now = datetime.now(UTC)
    request = RefundRequest(Claim(caller.merchant.id, caller.idempotency_key, "/v1/refunds", caller.fingerprint,
                                  command.payment), caller.request_id, command.amount, trace, now,
                            messages.transmission_datetime(now), now + timedelta(seconds=services.budgets.payment_s))
    reserved = await changed(ctx, services, services.changes.reserve(request),
                             lambda: _reserve_waiting(ctx, services, request))
    if reserved is None:
        return
    payment, created = reserved
    ctx.claimed = True
    ctx.payment, ctx.refund = payment, created
    ctx.transmitted_at, ctx.now = request.transmitted_at, now
    ctx.network = payment.network
    failpoint("refund.after_reserve")


async def _reserve_waiting(ctx: Context, services: Services, request: RefundRequest) -> reservations.Reserved:
    async with transaction(services.pool) as conn:
        payment = await claim_and_lock(conn, ctx, services, "/v1/refunds", request.claim.payment_id, param="payment")
        reservation, _, reserved = reservations.check(request, payment)
        await refund_store.insert_reservation(conn, reservation)
    return reserved


async def refund_message(ctx: Context, services: Services) -> None:
    """The card from the vault by the payment's token, and the refund's 0200."""
    payment, trace, refund = ctx.payment, ctx.trace, ctx.refund
    assert payment is not None and trace is not None and refund is not None
    try:
        card = await services.vault.detokenize(ctx.caller.merchant.id, payment.card_token)
    except VaultError as error:
        await _finish(ctx, services, RefundEvent.VAULT_FAILED, None, error=vault_result(error))
        return
    currency = lookup_currency(payment.currency)
    assert currency is not None
    ctx.message = messages.financial_request(
        pan=card.number.reveal(), amount_minor=refund.amount, currency=currency.numeric, stan=trace.stan,
        rrn=trace.rrn, terminal_id=trace.terminal_id, merchant_id=ctx.caller.merchant.id[-15:],
        expiry_yymm=card.expiry_yymm, processing_code=PROCESSING_CODE_REFUND, now=ctx.now)


async def record_refund(ctx: Context, services: Services) -> None:
    payment, trace, refund = ctx.payment, ctx.trace, ctx.refund
    assert payment is not None and trace is not None and refund is not None
    if ctx.network_error is not None:
        if ctx.network_error.retryable:                      # never sent
            await _finish(ctx, services, RefundEvent.NOT_SENT, None)
            return
        reversal = items.reversal_of_refund(payment.id, payment.network, refund.id, refund.amount,
                                            trace.stan, trace.rrn, ctx.transmitted_at)
        await _finish(ctx, services, RefundEvent.TIMED_OUT, None, reversal=reversal)
        services.wake_outbox()
        return
    assert ctx.response is not None
    code = str(ctx.response.get("39", ""))
    approved = result_for_field39(code) == ResultCode.APPROVED
    await _finish(ctx, services, RefundEvent.APPROVED if approved else RefundEvent.DECLINED, code)


async def _finish(ctx: Context, services: Services, event: RefundEvent, response_code: str | None,
                  error: Result | None = None, reversal: items.OutboxItem | None = None) -> None:
    payment, pending = ctx.payment, ctx.refund
    assert payment is not None and pending is not None
    finished = await finish_refund(services.writer.finish_refund, pending, _refund_of(payment), event, response_code,
                                   ctx.caller.request_id, ctx.caller.idempotency_key, error, reversal)
    if finished is None:
        await idempotency.answer_stored(ctx, services)   # recovery failed and reversed it first
        return
    ctx.outcome, ctx.outcome_bytes = finished


async def finish_recovered(conn: asyncpg.Connection, pending: refund_store.PendingRefund, request_id: str) -> None:
    """As a refund that timed out: failed, its reservation released, its 0200 reversed (it may have reached
    the network), and its idempotency key answered with the failed refund."""
    refund = pending.refund
    reversal = items.reversal_of_refund(refund.payment_id, pending.network, refund.id, refund.amount, pending.stan,
                                        pending.rrn, pending.transmitted_at)
    await finish_refund(partial(refund_store.write_finished, conn), refund,
                        RefundOf(refund.payment_id, refund.merchant_id, pending.network, refund.currency),
                        RefundEvent.TIMED_OUT, None, request_id, pending.idempotency_key, reversal=reversal,
                        recovering=True)


REFUND = Operation("refund", steps=(idempotency.lock, reserve, refund_message, send.send_refund, record_refund),
                   closing=(events.publish, idempotency.close))
