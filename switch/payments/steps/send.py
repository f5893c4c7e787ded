"""Step 6: the ISO 8583 request on a pooled link, within what remains of the request's budget."""

from __future__ import annotations

from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint, failpoint_soon
from switch.iso import messages
from switch.iso.messages import PROCESSING_CODE_PURCHASE
from switch.network.link import NetworkError
from switch.payments.context import Context, Services


async def authorization_message(ctx: Context, services: Services) -> None:
    """0100 for an authorization (manual capture), 0200 for a sale."""
    payment, card, trace = ctx.payment, ctx.card, ctx.trace
    assert payment is not None and card is not None and trace is not None
    currency = lookup_currency(payment.currency)
    assert currency is not None
    build = messages.financial_request if payment.capture_method == "automatic" else messages.authorization_request
    ctx.message = build(pan=card.number.reveal(), amount_minor=payment.amount, currency=currency.numeric,
                        stan=trace.stan, rrn=trace.rrn, terminal_id=trace.terminal_id,
                        merchant_id=payment.merchant_id[-15:], expiry_yymm=card.expiry_yymm,
                        cvv=card.cvc.reveal() if card.cvc else None, processing_code=PROCESSING_CODE_PURCHASE,
                        now=payment.created_at)


async def _round_trip(ctx: Context, services: Services) -> bool:
    """The answer goes to ``ctx.response``; no answer in time (or no link) to ``ctx.network_error``."""
    assert ctx.message is not None
    try:
        ctx.response = await services.networks.send(ctx.network, ctx.message, ctx.remaining_s(services.budgets))
    except NetworkError as error:
        ctx.network_error = error
        return False
    return True


async def send(ctx: Context, services: Services) -> None:
    failpoint_soon("payment.after_send")
    if await _round_trip(ctx, services):
        failpoint("payment.after_answer")


async def send_refund(ctx: Context, services: Services) -> None:
    failpoint_soon("refund.after_send")
    if await _round_trip(ctx, services):
        failpoint("refund.after_answer")
