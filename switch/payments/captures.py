"""Captures, group-committed: the captures that arrive together share one transaction.

A capture was a transaction of its own: four round trips (BEGIN, claim and lock, the write, COMMIT) and a
commit for one payment. Under load the captures of one event-loop pass now go as a batch
(switch.common.batch): one statement claims every request's key and locks every payment named, skipping
rows another transaction holds; each capture is checked here, in arrival order, against its row as locked
(a second capture of the same payment sees the first one's result); one statement writes them all and
deletes the keys of those refused; one commit. A lone capture is a batch of one.

A capture whose payment another transaction held (a refund, a cancel, recovery) comes back NotLocked and
goes the one-at-a-time way, which waits for the row. A batch never waits on a row lock, so two batches
cannot deadlock over the payments they lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg
import msgspec

from switch.common import metrics
from switch.common.batch import Batcher
from switch.ledger import postings
from switch.outbox import items
from switch.payments import outcome as outcomes
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.states import Event, apply, not_allowed_message
from switch.store import payments as payment_store
from switch.store.pool import is_statement_error, transaction
from switch.store.records import PaymentRecord


class Refused(Exception):
    """Raised inside a capture's (or refund's, or review's) transaction to roll it back; answered at its edge:
    with `outcome`, or, when None, with the outcome of the request that holds the key already."""

    def __init__(self, outcome: Outcome | None) -> None:
        super().__init__()
        self.outcome = outcome


class NotLocked(Exception):
    """Another transaction held the payment's row: the capture is to go the one-at-a-time way."""


class CaptureRequest(NamedTuple):
    claim: payment_store.Claim
    request_id: str
    amount_to_capture: int | None       # None: all that is capturable


def transition(request_id: str, payment: PaymentRecord, event: Event) -> str:
    """The payment's next status on `event`, or Refused when the state machine does not allow it."""
    next_status = apply(payment.status, event)
    if next_status is None:
        raise Refused(Outcome(Result.PAYMENT_UNEXPECTED_STATE, request_id,
                              message=not_allowed_message(payment.status, event)))
    return next_status


def capture_writes(request_id: str, payment: PaymentRecord, amount_to_capture: int | None,
                   idempotency_key: str) -> tuple[payment_store.Captured, Outcome, bytes]:
    """A locked payment's capture: its writes, its outcome and that outcome encoded (the key's answer and
    the merchant event's data); Refused when the payment cannot be captured so."""
    next_status = transition(request_id, payment, Event.CAPTURED)
    amount = amount_to_capture or payment.amount_capturable
    if amount > payment.amount_capturable:
        raise Refused(Outcome(Result.AMOUNT_TOO_LARGE, request_id, message="The amount to capture is larger than "
                              "the amount capturable.", param="amount_to_capture"))
    captured = msgspec.structs.replace(payment, status=next_status, amount_capturable=0, amount_received=amount)
    outcome = Outcome(Result.SUCCEEDED, request_id, payment=captured)
    data = outcomes.encode(outcome)
    writes = payment_store.Captured(
        captured, payment.status, Event.CAPTURED, items.capture_advice(payment, amount),
        postings.capture(payment.id, payment.merchant_id, payment.network, payment.currency, amount),
        "payment.captured", idempotency_key, data)
    return writes, outcome, data


def check_locked(request: CaptureRequest, payment: PaymentRecord) -> tuple[payment_store.Captured, Outcome, bytes]:
    """A capture of a payment its transaction holds, checked as the API answers it; Refused if refused."""
    claim = request.claim
    if payment.merchant_id != claim.merchant_id:
        raise Refused(Outcome(Result.RESOURCE_MISSING, request.request_id,
                              message=f"No such payment: '{claim.payment_id}'", param="id"))
    if payment.review_status == "open":
        raise Refused(Outcome(Result.PAYMENT_IN_REVIEW, request.request_id))
    return capture_writes(request.request_id, payment, request.amount_to_capture, claim.idempotency_key)


Answer = tuple[Outcome, bytes]


class Decided(NamedTuple):
    answers: list[Answer | BaseException]    # one per request, in order
    writes: list[payment_store.Captured]
    released: list[tuple[str, str]]             # (merchant, key) claimed here and not used


def decide(requests: Sequence[CaptureRequest], claimed: set[tuple[str, str]],
           locked: dict[str, PaymentRecord]) -> Decided:
    """Each capture of a batch checked in arrival order against the payments as the batch holds them."""
    decided = Decided([], [], [])
    seen: set[tuple[str, str]] = set()
    for request in requests:
        claim = request.claim
        pair = (claim.merchant_id, claim.idempotency_key)
        if pair in seen or pair not in claimed:     # the key has its row (in this batch, or from before)
            seen.add(pair)
            decided.answers.append(Refused(None))
            continue
        seen.add(pair)
        payment = locked.get(claim.payment_id)
        try:
            if payment is None:
                raise NotLocked()
            writes, outcome, data = check_locked(request, payment)
        except (Refused, NotLocked) as refused:
            decided.released.append(pair)
            decided.answers.append(refused)
            continue
        locked[payment.id] = writes.payment         # a later capture in the batch sees this one's result
        decided.writes.append(writes)
        decided.answers.append((outcome, data))
    return decided


class CaptureBatches:
    """The worker's group-committed captures (see the module's docstring), on `pool`: a pool of their own of
    INFLIGHT_MAX sessions whose planner finds rows by key (switch.common.pg_settings.KEYED_ONLY)."""

    INFLIGHT_MAX = 2
    SIZE_MAX = 128

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.batches: Batcher[CaptureRequest, Answer] = Batcher(
            self._run, size_max=self.SIZE_MAX, inflight_max=self.INFLIGHT_MAX, splittable=is_statement_error,
            on_split=metrics.batch_splits.labels("capture").inc)

    async def capture(self, request: CaptureRequest) -> Answer:
        """The capture's outcome and its encoding once committed; raises Refused or NotLocked."""
        return await self.batches.submit(request)

    async def _run(self, requests: list[CaptureRequest]) -> list[Answer | BaseException]:
        claims: dict[tuple[str, str], payment_store.Claim] = {}
        for request in requests:
            claims.setdefault((request.claim.merchant_id, request.claim.idempotency_key), request.claim)
        async with transaction(self.pool) as conn:
            claimed, locked = await payment_store.claim_and_lock_many(conn, list(claims.values()))
            decided = decide(requests, claimed, locked)
            if decided.writes or decided.released:
                await payment_store.write_captured_many(conn, decided.writes, decided.released)
        return decided.answers
