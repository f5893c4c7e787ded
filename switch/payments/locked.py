"""Changes to an existing payment, group-committed: those that arrive together share one transaction.

A capture or a refund's reservation was a transaction of its own: four round trips (BEGIN, claim and lock, the
write, COMMIT) and a commit for one payment. (Refunds batched on their own came one to a batch and gained
nothing; they ride the captures' batches: switch.payments.changes.) Under load, the requests of one event-loop
pass now go as a batch (switch.common.batch): one statement claims every request's key and locks every payment
named, skipping rows another transaction holds; each request is checked here, in arrival order, against its
payment as held (a later request for the same payment sees an earlier one's result); one or two statements
write them all and delete the keys of those refused, as a rollback would have left them; one commit. A lone
request is a batch of one.

A request whose payment another transaction held (or that names no payment of its merchant) comes back
NotLocked and goes its operation's one-at-a-time way, which waits for the row. A batch never waits on a
payment's row lock, so two batches cannot deadlock over payments. It can wait on a key another
transaction is writing (when Redis no longer held the key's lock), or on a lock of a whole table: its
sessions give up after `lock_timeout`, and the batch's requests all go the one-at-a-time way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import asyncpg

from switch.common import metrics
from switch.common.batch import Batcher
from switch.common.pg_settings import KEYED_JOINS
from switch.payments.outcome import Outcome
from switch.store import payments as payment_store
from switch.store.pool import is_statement_error, transaction
from switch.store.records import PaymentRecord


class Refused(Exception):
    """Raised inside a change's transaction to roll it back; answered at its edge: with `outcome`, or, when
    None, with the outcome of the request that holds the key already."""

    def __init__(self, outcome: Outcome | None) -> None:
        super().__init__()
        self.outcome = outcome


class NotLocked(Exception):
    """Another transaction held the payment's row: the request is to go the one-at-a-time way."""


class Request(Protocol):
    @property
    def claim(self) -> payment_store.Claim: ...

    @property
    def request_id(self) -> str: ...


Req = TypeVar("Req", bound=Request)
Writes = TypeVar("Writes")
Answer = TypeVar("Answer")

# A request checked against its payment as held: its writes, the payment as they leave it, and its answer.
# Raises Refused when the request is refused.
Check = Callable[[Req, PaymentRecord], tuple[Writes, PaymentRecord, Answer]]
Write = Callable[[asyncpg.Connection, list[Writes], list[tuple[str, str]]], Awaitable[None]]


@dataclass(slots=True)
class Decided(Generic[Writes, Answer]):
    answers: list[Answer | BaseException] = field(default_factory=list)    # one per request, in order
    writes: list[Writes] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)   # (merchant, key) claimed and not used


def decide(requests: Sequence[Req], claimed: set[tuple[str, str]], locked: dict[str, PaymentRecord],
           check: Check[Req, Writes, Answer]) -> Decided[Writes, Answer]:
    """Each request of a batch checked in arrival order against the payments as the batch holds them."""
    decided: Decided[Writes, Answer] = Decided()
    seen: set[tuple[str, str]] = set()
    for request in requests:
        claim = request.claim
        pair = (claim.merchant_id, claim.idempotency_key)
        # The key has its row from before, or from an earlier request of the batch. (Redis lost the key's
        # lock.) A key released by that earlier request answers 409 idempotency_key_in_use: try again.
        if pair in seen or pair not in claimed:
            seen.add(pair)
            decided.answers.append(Refused(None))
            continue
        seen.add(pair)
        payment = locked.get(claim.payment_id)
        try:
            if payment is None or payment.merchant_id != claim.merchant_id:     # none of its merchant's
                raise NotLocked()
            writes, changed, answer = check(request, payment)
        except Exception as refused:  # noqa: BLE001 - Refused, NotLocked, or one request's own fault alone
            decided.released.append(pair)
            decided.answers.append(refused)
            continue
        locked[changed.id] = changed                # a later request in the batch sees this one's result
        decided.writes.append(writes)
        decided.answers.append(answer)
    return decided


class LockedBatches(Generic[Req, Writes, Answer]):
    """Group-committed changes of one kind (see the module's docstring), on `pool`: a pool of SESSION
    settings, one session for each batch in flight."""

    INFLIGHT_MAX = 2
    SIZE_MAX = 128
    # The planner finds rows by key (KEYED_JOINS); a key another transaction is writing is not waited for.
    # A statement is planned once a session (its generic plan): left to choose, Postgres planned the
    # refunds' reservations afresh on every call (240 µs a plan, as long as the statement ran).
    SESSION = {**KEYED_JOINS, "lock_timeout": "200ms", "plan_cache_mode": "force_generic_plan"}

    def __init__(self, name: str, pool: asyncpg.Pool, check: Check[Req, Writes, Answer],
                 write: Write[Writes]) -> None:
        self.pool = pool
        self.check = check
        self.write = write
        self.batches: Batcher[Req, Answer] = Batcher(
            self._run, size_max=self.SIZE_MAX, inflight_max=self.INFLIGHT_MAX, splittable=is_statement_error,
            on_split=metrics.batch_splits.labels(name).inc)

    async def submit(self, request: Req) -> Answer:
        """The request's answer once committed; raises Refused or NotLocked."""
        return await self.batches.submit(request)

    async def _run(self, requests: list[Req]) -> list[Answer | BaseException]:
        try:
            return await self._run_batch(requests)
        except asyncpg.LockNotAvailableError:
            # Rolled back: every request goes the one-at-a-time way, which waits. Not split: a lock on a
            # whole table (a migration) would fail every half in turn, each after the timeout.
            return [NotLocked() for _ in requests]

    async def _run_batch(self, requests: list[Req]) -> list[Answer | BaseException]:
        claims: dict[tuple[str, str], payment_store.Claim] = {}
        for request in requests:
            claims.setdefault((request.claim.merchant_id, request.claim.idempotency_key), request.claim)
        async with transaction(self.pool) as conn:
            claimed, locked = await payment_store.claim_and_lock_many(conn, list(claims.values()))
            decided = decide(requests, claimed, locked, self.check)
            if decided.writes or decided.released:
                await self.write(conn, decided.writes, decided.released)
        return decided.answers
