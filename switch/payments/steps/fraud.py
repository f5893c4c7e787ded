"""Step 3: fraud screening (switch.fraud), after the card is known and before anything is written or sent.

The verdict rides the payment's write-ahead row. A blocked payment is then finished as failed with
`decline_code: fraudulent` in the same group-committed statement a network answer would use, and never
reaches a network; a payment sent to review is authorized only (0100, held for capture) whatever its
capture method, and waits in the review queue. Declines and blocks add to the velocity counters.
"""

from __future__ import annotations

import msgspec

from switch.fraud.rules import Action
from switch.fraud.screen import Payment
from switch.payments import outcome as outcomes
from switch.payments.commands import Authorize
from switch.payments.context import Context, Services
from switch.payments.outcome import Outcome
from switch.payments.results import Result, meaning
from switch.payments.states import Event, Status, apply
from switch.payments.steps.record import finish_or_answer
from switch.store.writer import Finish


async def screen(ctx: Context, services: Services) -> None:
    assert ctx.card is not None
    command: Authorize = ctx.command
    merchant = ctx.caller.merchant
    customer = command.customer_details
    ctx.screened = await services.fraud.screen(Payment(
        merchant.id, merchant.country, command.amount, command.currency, command.capture_method, ctx.card.brand,
        ctx.card.number.reveal(), customer.ip_address if customer else None, customer.email if customer else None,
        ctx.token), ctx.early)
    # Read once: let the counters' answer go now, not with the payment, so the collector finds it young
    # (the fraud step's objects that outlived a collection cost the worker about 8 µs a payment in GC).
    ctx.early = None


async def block(ctx: Context, services: Services) -> None:
    """A blocked payment, written ahead, is finished as failed without a network message."""
    screened = ctx.screened
    if screened is None or screened.record.decision != Action.BLOCK:
        return
    assert ctx.payment is not None
    result = Result.BLOCKED_FRAUDULENT
    decline = meaning(result)
    payment = msgspec.structs.replace(ctx.payment, status=apply(Status.PROCESSING, Event.BLOCKED),
                                      decline_code=decline.decline_code, failure_message=decline.message)
    outcome = Outcome(result, ctx.caller.request_id, payment=payment, payment_id=payment.id)
    data = outcomes.encode(outcome)
    services.fraud.velocity.decline(screened.subjects)
    await finish_or_answer(ctx, services, Finish(payment, Event.BLOCKED, ctx.caller.idempotency_key, data, []),
                           outcome, data)

