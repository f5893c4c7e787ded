"""Step 7: the network's answer recorded with its event, its ledger postings (an approved sale is captured
at once) and the canonical outcome for the idempotency key, group-committed in one statement."""

from __future__ import annotations

import msgspec

from switch.iso.codes import result_for_field39
from switch.ledger import postings
from switch.payments import outcome as outcomes
from switch.payments.commands import Authorize
from switch.payments.context import Context, Services
from switch.payments.outcome import Outcome
from switch.payments.results import Result, for_network, meaning
from switch.payments.states import Event, Status, apply
from switch.payments.steps.fail import not_answered
from switch.payments.steps.idempotency import answer_stored
from switch.store.records import LedgerEntry, PaymentRecord
from switch.store.writer import Finish


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
    command: Authorize = ctx.command
    response_code = str(ctx.response.get("39", ""))
    result = for_network(result_for_field39(response_code))   # partial approvals are not accepted: they decline
    if result is Result.SUCCEEDED:
        auth_code = str(ctx.response.get("38", "")).strip() or None
        payment, event, entries = _approved(ctx.payment, command.capture_method == "automatic", auth_code,
                                            response_code)
        outcome = Outcome(result, ctx.caller.request_id, payment=payment)
    else:
        decline = meaning(result)
        payment = msgspec.structs.replace(ctx.payment, status=apply(Status.PROCESSING, Event.DECLINED),
                                          response_code=response_code, decline_code=decline.decline_code,
                                          failure_message=decline.message)
        event, entries = Event.DECLINED, []
        outcome = Outcome(result, ctx.caller.request_id, payment=payment, payment_id=payment.id)
    data = outcomes.encode(outcome)
    if not await services.writer.finish(Finish(payment, event, ctx.caller.idempotency_key, data, entries)):
        await answer_stored(ctx, services)     # recovery failed and reversed it first (we outlived the deadline)
        return
    ctx.outcome, ctx.outcome_bytes = outcome, data
