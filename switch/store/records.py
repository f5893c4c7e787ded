"""What the store returns and takes: plain records of the tables, never API objects.

``PaymentRecord`` and ``RefundRecord`` are also the snapshots an outcome carries (switch.payments.outcome),
so a front end can render a stored answer again in its own format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class FraudRecord(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The fraud screen's verdict on a payment (`payments.fraud`): what it decided and why. The signals it
    saw are stored beside it (`payments.signals`, switch.fraud.signals), which a backtest runs candidate
    rules over. Never the PAN: the per-merchant fingerprint only. Text, numbers and tuples of text only, so
    the collector need not track it: every payment in flight carries one."""

    decision: str                           # allow | review | block
    risk_score: int
    risk_level: str                         # normal | elevated | highest
    rule: str | None = None                 # the rule that decided
    reasons: tuple[str, ...] = ()
    shadow_rules: tuple[str, ...] = ()      # shadow rules that would have acted
    policy_version: int = 0


class PaymentRecord(msgspec.Struct, kw_only=True):
    """A row of `payments`. Never a PAN: the vault token, brand and last 4 only."""

    id: str
    merchant_id: str
    status: str
    amount: int
    currency: str
    capture_method: str
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    card_token: str
    card_brand: str
    card_last4: str
    card_exp_month: int
    card_exp_year: int
    network: str
    terminal_id: str
    stan: str
    rrn: str
    transmitted_at: str
    auth_code: str | None = None
    response_code: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    description: str | None = None
    statement_descriptor: str | None = None
    metadata: dict[str, str] = {}
    card_fingerprint: str | None = None
    fraud: FraudRecord | None = None
    review_status: str | None = None
    deadline_at: datetime
    created_at: datetime


class RefundRecord(msgspec.Struct, kw_only=True):
    """A row of `refunds` as merchants may see it."""

    id: str
    payment_id: str
    merchant_id: str
    amount: int
    currency: str
    status: str
    failure_code: str | None
    created_at: datetime


class IdempotencyRecord(msgspec.Struct):
    fingerprint: bytes
    outcome: bytes | None          # the canonical outcome (switch.payments.outcome); None while in flight


class OutboxItem(msgspec.Struct, kw_only=True):
    """A message the network must acknowledge: a capture advice or a reversal of an earlier message."""

    payment_id: str
    kind: str                 # capture_advice | reversal
    network: str
    original_mti: str         # 0100 (authorization), 0200 (sale or refund)
    processing_code: str
    amount: int               # what the network should end up with: captured amount, 0 for a full reversal
    original_amount: int
    stan: str
    rrn: str
    transmitted_at: str
    refund_id: str | None = None


class LedgerEntry(msgspec.Struct, array_like=True):
    """One line of a posting (signed minor units: debit positive, credit negative)."""

    posting_id: str
    payment_id: str | None             # None for postings of no payment (payouts)
    account: str
    amount: int
    currency: str


class MerchantRecord(msgspec.Struct):
    id: str
    name: str
    rate_limit_per_s: int | None = None
    rate_limit_burst: int | None = None
    country: str = "US"


def payment_record(row: Any) -> PaymentRecord:
    """A `payments` row (asyncpg.Record selected with PAYMENT_COLUMNS) as a record."""
    values = dict(row.items())
    if values.get("fraud") is not None:
        values["fraud"] = msgspec.convert(values["fraud"], FraudRecord)
    return PaymentRecord(**values)


def refund_record(row: Any) -> RefundRecord:
    return RefundRecord(**dict(row.items()))
