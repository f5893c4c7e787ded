"""Recovery: payments left `processing` and refunds left `pending` past their deadline (their worker died
mid-flight) are failed, reversed and answered for their idempotency keys through the same fail-and-reverse
step as a timeout. Run by every worker's outbox loop; ``SKIP LOCKED`` lets several share the work."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from switch.payments import metrics
from switch.payments.operations.refund import finish_recovered
from switch.payments.states import Event
from switch.payments.steps.fail import fail_payment
from switch.store import payments as payment_store
from switch.store import refunds as refund_store
from switch.store.pool import transaction

log = logging.getLogger(__name__)

BATCH_MAX = 100
RECOVERY_GRACE_S = 2.0


def recovery_request_id() -> str:
    """The request id the recovered answers carry (their own request's worker is gone)."""
    return f"req_recovery_{datetime.now(UTC):%Y%m%d%H%M%S}"


async def recover_in_flight(pool: asyncpg.Pool, batch_max: int = BATCH_MAX,
                            grace_s: float = RECOVERY_GRACE_S) -> int:
    """Fail and reverse what was left in flight past its deadline plus `grace_s`; returns how many."""
    request_id = recovery_request_id()
    async with transaction(pool) as conn:
        payments = await payment_store.lock_overdue_payments(conn, grace_s, batch_max)
        for payment in payments:
            await fail_payment(conn, payment, Event.TIMED_OUT, request_id, idempotency_key=None)
    if payments:
        log.warning("recovered %d payments left in flight past their deadline", len(payments))
    async with transaction(pool) as conn:
        refunds = await refund_store.lock_overdue_refunds(conn, grace_s, batch_max)
        for pending in refunds:
            await finish_recovered(conn, pending, request_id)
    if refunds:
        log.warning("recovered %d refunds left pending past their deadline", len(refunds))
    metrics.recovered.inc(len(payments) + len(refunds))
    return len(payments) + len(refunds)
