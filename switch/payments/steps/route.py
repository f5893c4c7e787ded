"""Step 4: the network for the card's brand and the message's trace numbers (terminal, STAN, RRN), and the
payment as it will be written ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switch.common.ids import new_id
from switch.fraud.rules import Action
from switch.iso import messages
from switch.payments.commands import Authorize, ConfirmDraft
from switch.payments.context import Context, Services
from switch.payments.states import Status
from switch.store.records import PaymentRecord


async def route(ctx: Context, services: Services) -> None:
    assert ctx.card is not None
    command: Authorize = ctx.command
    ctx.network = services.networks.route(ctx.card.brand)
    trace = ctx.trace = await services.traces.next()
    now = datetime.now(UTC)
    card = ctx.card
    screened = ctx.screened
    review = screened is not None and screened.record.decision == Action.REVIEW
    ctx.payment = PaymentRecord(
        id=command.payment_id if isinstance(command, ConfirmDraft) else new_id("pay"),
        merchant_id=ctx.caller.merchant.id, status=Status.PROCESSING, amount=command.amount,
        currency=command.currency, card_token=ctx.token,
        # A payment sent to review is held for capture (0100), whatever its capture method.
        capture_method="manual" if review else command.capture_method,
        card_brand=card.brand, card_last4=card.last4, card_exp_month=card.exp_month, card_exp_year=card.exp_year,
        network=ctx.network, terminal_id=trace.terminal_id, stan=trace.stan, rrn=trace.rrn,
        transmitted_at=messages.transmission_datetime(now), description=command.description,
        statement_descriptor=command.statement_descriptor, metadata=command.metadata or {},
        # The verdict (its signals go with the row, not here): the outcome (the key's answer) carries it.
        card_fingerprint=screened.fingerprint if screened else None,
        fraud=screened.record if screened else None,
        review_status="open" if review else None,
        deadline_at=now + timedelta(seconds=services.budgets.payment_s), created_at=now)
