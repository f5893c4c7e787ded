"""What the steps of one operation share: the services they use and the context of the request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from switch.common.cards import CardData
from switch.fraud.screen import Early, Screened, Screener
from switch.idempotency.lock import Idempotency
from switch.iso.messages import Message
from switch.network.link import NetworkError
from switch.network.router import Networks
from switch.payments.changes import Changes
from switch.payments.commands import Caller
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.trace import Trace, TraceAllocator
from switch.store.records import PaymentRecord, RefundRecord
from switch.store.writer import PaymentWriter
from switch.vault_client import VaultClient


@dataclass(frozen=True, slots=True)
class Budgets:
    payment_s: float = 1.8          # the whole request's budget, under the networks' 2 s rule
    network_s: float = 1.2          # the most of that budget one network round trip may take


@dataclass(slots=True)
class Services:
    """The worker's long-lived parts, built once by the composition root (switch.process.worker)."""

    budgets: Budgets
    pool: asyncpg.Pool
    writer: PaymentWriter
    vault: VaultClient
    networks: Networks
    traces: TraceAllocator
    idempotency: Idempotency
    wake_outbox: Callable[[], None]
    fraud: Screener
    changes: Changes                  # captures and refunds' reservations, group-committed


@dataclass(slots=True, repr=False)
class Context:
    """One request going through the steps of its operation. A step that decides the answer sets
    ``outcome``; the steps after it do not run (but the operation's closing steps do)."""

    caller: Caller
    command: Any
    started_s: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None
    outcome_bytes: bytes = b""   # the outcome as stored with the key (encoded once)
    lock_name: str = ""          # the Redis key of the idempotency lock
    lock_held: bool = False      # the Redis lock is ours: released unless the outcome is stored
    claimed: bool = False        # the key has its Postgres row: the outcome is stored, not released
    replayed: bool = False       # the outcome is a finished request's, answered again
    card: CardData | None = None
    token: str = ""
    early: Early | None = None         # the fraud counters, when they rode the lock's command
    screened: Screened | None = None   # the fraud screen's verdict, once the card is known
    network: str = ""
    trace: Trace | None = None
    payment: PaymentRecord | None = None
    refund: RefundRecord | None = None     # the pending refund, as its reservation wrote it
    transmitted_at: str = ""     # field 7 of the request: a reversal repeats it
    now: datetime | None = None
    message: Message | None = None
    response: Message | None = None
    network_error: NetworkError | None = None

    def __repr__(self) -> str:
        # The card and the ISO message hold the clear PAN and CVV: never print them.
        payment_id = self.payment.id if self.payment else None
        result = self.outcome.result if self.outcome else None
        return f"Context(request_id={self.caller.request_id!r}, payment={payment_id!r}, outcome={result!r})"

    def answer(self, result: Result, **details: Any) -> None:
        self.outcome = Outcome(result, self.caller.request_id, **details)

    def remaining_s(self, budgets: Budgets) -> float:
        return min(budgets.payment_s - (time.monotonic() - self.started_s), budgets.network_s)
