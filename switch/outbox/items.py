"""The outbox rows a state change queues: capture advices and full reversals, keeping the original STAN
and RRN so the network can match (and de-duplicate) them."""

from __future__ import annotations

from switch.iso import messages
from switch.store.records import OutboxItem, PaymentRecord


def original_mti(payment: PaymentRecord) -> str:
    """A sale went out as 0200, an authorization as 0100."""
    if payment.capture_method == "automatic":
        return messages.MTI_FINANCIAL_REQUEST
    return messages.MTI_AUTHORIZATION_REQUEST


def reversal_of_authorization(payment: PaymentRecord) -> OutboxItem:
    """A full reversal (amount 0) of a payment's authorization or sale."""
    return OutboxItem(payment_id=payment.id, kind="reversal", network=payment.network,
                      original_mti=original_mti(payment), processing_code=messages.PROCESSING_CODE_PURCHASE,
                      amount=0, original_amount=payment.amount, stan=payment.stan, rrn=payment.rrn,
                      transmitted_at=payment.transmitted_at)


def capture_advice(payment: PaymentRecord, amount: int) -> OutboxItem:
    """The 0220 completing an authorization with the captured amount."""
    return OutboxItem(payment_id=payment.id, kind="capture_advice", network=payment.network,
                      original_mti=messages.MTI_AUTHORIZATION_REQUEST,
                      processing_code=messages.PROCESSING_CODE_PURCHASE, amount=amount,
                      original_amount=payment.amount, stan=payment.stan, rrn=payment.rrn,
                      transmitted_at=payment.transmitted_at)


def reversal_of_refund(payment_id: str, network: str, refund_id: str, amount: int, stan: str, rrn: str,
                       transmitted_at: str) -> OutboxItem:
    """A full reversal of a refund's 0200 (processing code 20)."""
    return OutboxItem(payment_id=payment_id, kind="reversal", network=network,
                      original_mti=messages.MTI_FINANCIAL_REQUEST, processing_code=messages.PROCESSING_CODE_REFUND,
                      amount=0, original_amount=amount, stan=stan, rrn=rrn, transmitted_at=transmitted_at,
                      refund_id=refund_id)
