"""Merchant events written by the single-row transactions of voids and reviews, in the same transaction as
their state change. Each carries the object as the change left it, as the canonical outcome the events API
renders (docs/events.md). The batched statements of the hot path, a capture's and a refund's own statements
and the settlement's SQL write their own rows (switch.store.writer, switch.store.payments,
switch.store.refunds, switch.store.settlement).
"""

from __future__ import annotations

import asyncpg

from switch.payments import outcome as outcomes
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.store import events as event_store
from switch.store.records import PaymentRecord


async def payment_changed(conn: asyncpg.Connection, type_: str, payment: PaymentRecord, request_id: str) -> None:
    data = outcomes.encode(Outcome(Result.SUCCEEDED, request_id, payment=payment))
    await event_store.insert(conn, payment.merchant_id, type_, payment.id, data)


