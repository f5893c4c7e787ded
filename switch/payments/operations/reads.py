"""Reads: a payment, a page of payments, a refund. No idempotency, no writes."""

from __future__ import annotations

from switch.payments.commands import Caller, GetPayment, GetRefund, ListPayments
from switch.payments.context import Services
from switch.payments.outcome import Listing, Outcome
from switch.payments.results import Result
from switch.store import fraud as fraud_store
from switch.store import payments as payment_store
from switch.store import refunds as refund_store


async def get_payment(services: Services, caller: Caller, command: GetPayment) -> Outcome:
    payment = await payment_store.get_payment(services.pool, caller.merchant.id, command.payment_id)
    if payment is None:
        return Outcome(Result.RESOURCE_MISSING, caller.request_id, message=f"No such payment: '{command.payment_id}'")
    return Outcome(Result.SUCCEEDED, caller.request_id, payment=payment)


async def list_payments(services: Services, caller: Caller, command: ListPayments) -> Listing:
    payments, has_more = await payment_store.list_payments(
        services.pool, caller.merchant.id, command.limit, command.starting_after, command.ending_before,
        command.created_gte, command.created_lte)
    return Listing(payments, has_more)


async def get_refund(services: Services, caller: Caller, command: GetRefund) -> Outcome:
    refund = await refund_store.get_refund(services.pool, caller.merchant.id, command.refund_id)
    if refund is None:
        return Outcome(Result.RESOURCE_MISSING, caller.request_id, message=f"No such refund: '{command.refund_id}'")
    return Outcome(Result.SUCCEEDED, caller.request_id, refund=refund)


async def list_reviews(services: Services, caller: Caller, limit: int) -> Listing:
    payments = await fraud_store.list_open_reviews(services.pool, caller.merchant.id, limit + 1)
    return Listing(payments[:limit], len(payments) > limit)
