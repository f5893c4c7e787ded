"""Captures and refunds' reservations group-committed together (switch.payments.locked): the changes to
existing payments that arrive in one event-loop pass share one transaction, whichever kind each is.

Refunds are about one payment in twenty: batched on their own they came one to a batch and gained nothing.
Riding the captures' batches, a refund's reservation saves its own transaction (a pooled connection, BEGIN,
the claim and lock, COMMIT) and costs one statement more in a batch that has refunds in it.

Each request is checked, in arrival order, by its kind's check; the batch's writes then go by kind, the
captures' statement first. A refund after a capture of the same payment in one batch reserves against the
payment as captured, and its statement meets the row as captured too (the other way round, the reservation
would break `amount_refunded <= amount_received` and split the batch).
"""

from __future__ import annotations

from typing import TypeAlias, cast

import asyncpg

from switch.payments import captures, reservations
from switch.payments.captures import CaptureRequest
from switch.payments.locked import LockedBatches
from switch.payments.reservations import RefundRequest
from switch.store import payments as payment_store
from switch.store import refunds as refund_store
from switch.store.records import PaymentRecord

Change: TypeAlias = CaptureRequest | RefundRequest
Writes: TypeAlias = payment_store.Captured | refund_store.Reservation
Answer: TypeAlias = captures.Answer | reservations.Reserved


def check(request: Change, payment: PaymentRecord) -> tuple[Writes, PaymentRecord, Answer]:
    """The request checked by its kind's check against its payment as the batch holds it."""
    if isinstance(request, CaptureRequest):
        return captures.check(request, payment)
    return reservations.check(request, payment)


async def write(conn: asyncpg.Connection, writes: list[Writes], released: list[tuple[str, str]]) -> None:
    """The captures' statement, then the reservations' when the batch has any; the keys claimed and not
    used are deleted by the first statement that runs."""
    captured = [w for w in writes if isinstance(w, payment_store.Captured)]
    reserved = [w for w in writes if isinstance(w, refund_store.Reservation)]
    if captured or not reserved:
        await payment_store.write_captured_many(conn, captured, released)
        released = []
    if reserved:
        await refund_store.insert_reservations(conn, reserved, released)


class Changes:
    """The worker's batches of changes to existing payments, one kind of answer per method."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.batches: LockedBatches[Change, Writes, Answer] = LockedBatches("payment_change", pool, check, write)

    async def capture(self, request: CaptureRequest) -> captures.Answer:
        """The capture's outcome once committed; raises Refused, NotLocked or BatchQueueFull."""
        return cast(captures.Answer, await self.batches.submit(request))

    async def reserve(self, request: RefundRequest) -> reservations.Reserved:
        """The payment as found and the pending refund once committed; raises as `capture`."""
        return cast(reservations.Reserved, await self.batches.submit(request))
