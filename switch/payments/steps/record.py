"""Step 7: the network's answer recorded with its event, its ledger postings (an approved sale is captured
at once) and the canonical outcome for the idempotency key, group-committed in one statement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec

from switch.iso.codes import result_for_field39
from switch.ledger import postings
from switch.outbox import items
from switch.payments import outcome as outcomes
from switch.payments.context import Context, Services
from switch.payments.outcome import Outcome
from switch.payments.results import Result, for_network, meaning
from switch.payments.states import Event, Status, apply
from switch.payments.steps.fail import fail_payment, not_answered
from switch.payments.steps.idempotency import answer_stored
from switch.store import outbox as outbox_store
from switch.store.pool import UNAVAILABLE, is_statement_error
from switch.store.records import LedgerEntry, PaymentRecord
from switch.store.writer import Finish

FINISH_RETRY_DELAY_S = 0.05
FINISH_RETRY_DELAY_MAX_S = 0.4


def _approved(payment: PaymentRecord, sale: bool, auth_code: str | None,
              response_code: str) -> tuple[PaymentRecord, Event, list[LedgerEntry]]:
    event = Event.SALE_APPROVED if sale else Event.AUTHORIZED
    approved = msgspec.structs.replace(
        payment, status=apply(Status.PROCESSING, event), amount_capturable=0 if sale else payment.amount,
        amount_received=payment.amount if sale else 0, auth_code=auth_code, response_code=response_code)
    entries = postings.capture(payment.id, payment.merchant_id, payment.network, payment.currency,
                               payment.amount) if sale else []
    return approved, event, entries


async def record(ctx: Context, services: Services) -> None:
    if ctx.network_error is not None:
        await not_answered(ctx, services)
        return
    assert ctx.payment is not None and ctx.response is not None
    response_code = str(ctx.response.get("39", ""))
    result = for_network(result_for_field39(response_code))   # partial approvals are not accepted: they decline
    if result is Result.SUCCEEDED:
        auth_code = str(ctx.response.get("38", "")).strip() or None
        # The payment's capture method, not the command's: one sent to review is held for capture.
        payment, event, entries = _approved(ctx.payment, ctx.payment.capture_method == "automatic", auth_code,
                                            response_code)
        outcome = Outcome(result, ctx.caller.request_id, payment=payment)
    else:
        decline = meaning(result)
        payment = msgspec.structs.replace(ctx.payment, status=apply(Status.PROCESSING, Event.DECLINED),
                                          response_code=response_code, decline_code=decline.decline_code,
                                          failure_message=decline.message)
        event, entries = Event.DECLINED, []
        outcome = Outcome(result, ctx.caller.request_id, payment=payment, payment_id=payment.id)
        if result is Result.DECLINED_PARTIALLY_APPROVED:
            await _reverse_partial_approval(services, ctx.payment)
        if ctx.screened is not None:           # card testing is mostly declines: they count too
            services.fraud.velocity.decline(ctx.screened.subjects)
    data = outcomes.encode(outcome)
    await finish_or_answer(ctx, services, Finish(payment, event, ctx.caller.idempotency_key, data, entries),
                           outcome, data)


async def _reverse_partial_approval(services: Services, payment: PaymentRecord) -> None:
    """An issuer that approved part of the amount (39 = 10) holds that part, and partial approvals are
    declined here: the authorization is reversed. A statement of its own, not part of the group-committed
    finish (issuers answer 10 only when asked for partial approvals, which the switch never is), queued
    before the finish: if the finish is lost, recovery
    fails the payment and queues a reversal of its own, which the network answers as a repeat. While
    Postgres is away the finish meets the same outage, and recovery reverses the payment then."""
    try:
        await outbox_store.insert_outbox(services.pool, items.reversal_of_authorization(payment))
    except UNAVAILABLE:
        return
    services.wake_outbox()


async def finish_or_answer(ctx: Context, services: Services, finish: Finish, outcome: Outcome, data: bytes) -> None:
    """The payment's finish, group-committed; retried while Postgres is away and the payment is in its
    deadline; the stored answer when recovery finished it first."""
    payment = finish.payment
    try:
        finished = await services.writer.finish(finish)
    except UNAVAILABLE:
        try:
            finished = await _finish_again(services, finish, payment.deadline_at)
        except Exception as error:
            await _not_recorded(ctx, services, error)
            return
    except Exception as error:
        await _not_recorded(ctx, services, error)
        return
    if not finished:
        await answer_stored(ctx, services)     # recovery failed and reversed it first (we outlived the deadline)
        return
    ctx.outcome, ctx.outcome_bytes = outcome, data


async def _finish_again(services: Services, finish: Finish, deadline_at: datetime) -> bool:
    """The batched finish, tried again while Postgres is unavailable and the payment is within its
    deadline: an answer the network gave is recorded if the database comes back in time."""
    delay_s = FINISH_RETRY_DELAY_S
    while datetime.now(UTC) + timedelta(seconds=delay_s) < deadline_at:
        await asyncio.sleep(delay_s)
        try:
            return await services.writer.finish(finish)
        except UNAVAILABLE:
            delay_s = min(2 * delay_s, FINISH_RETRY_DELAY_MAX_S)
    return await services.writer.finish(finish)          # the last try; its error is the answer


async def _not_recorded(ctx: Context, services: Services, error: Exception) -> None:
    """The answer could not be recorded. A row Postgres refuses (a network answer it cannot store, say) is
    failed and reversed now; while Postgres is away, recovery fails and reverses the payment once it is back, and
    its key answers from Postgres then (the Redis lock is left to lapse, nothing is cached)."""
    assert ctx.payment is not None
    if is_statement_error(error):
        failed = await fail_payment(services.pool, ctx.payment, Event.TIMED_OUT, ctx.caller.request_id,
                                    ctx.caller.idempotency_key, result=Result.NETWORK_ANSWER_INVALID)
        if failed is not None:
            ctx.outcome, ctx.outcome_bytes = failed
            services.wake_outbox()
            return
    elif not isinstance(error, UNAVAILABLE):
        raise error
    ctx.claimed = ctx.lock_held = False
    ctx.answer(Result.ANSWER_NOT_RECORDED, payment_id=ctx.payment.id)
