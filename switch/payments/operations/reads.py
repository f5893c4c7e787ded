"""Reads: a payment, a page of payments, a refund, a page of refunds; and a payment's description and
metadata, which change no state. No idempotency."""

from __future__ import annotations

from switch.payments.commands import (
    METADATA_KEYS_MAX,
    Caller,
    GetPayment,
    GetRefund,
    ListPayments,
    ListRefunds,
    UpdatePayment,
)
from switch.payments.context import Services
from switch.payments.outcome import Listing, Outcome
from switch.payments.results import Result
from switch.store import fraud as fraud_store
from switch.store import payments as payment_store
from switch.store import refunds as refund_store
from switch.store.records import RefundRecord


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


async def list_refunds(services: Services, caller: Caller, command: ListRefunds) -> tuple[list[RefundRecord], bool]:
    return await refund_store.list_refunds(services.pool, caller.merchant.id, command.limit, command.payment_id,
                                           command.starting_after, command.ending_before)


async def update_payment(services: Services, caller: Caller, command: UpdatePayment) -> Outcome:
    async with services.pool.acquire() as conn:
        payment = await payment_store.update_details(conn, caller.merchant.id, command.payment_id,
                                                     command.description, command.metadata, METADATA_KEYS_MAX)
        if payment is not None:
            return Outcome(Result.SUCCEEDED, caller.request_id, payment=payment)
        if await payment_store.get_payment(conn, caller.merchant.id, command.payment_id) is None:
            return Outcome(Result.RESOURCE_MISSING, caller.request_id,
                           message=f"No such payment: '{command.payment_id}'")
    return Outcome(Result.TOO_MANY_METADATA_KEYS, caller.request_id)
