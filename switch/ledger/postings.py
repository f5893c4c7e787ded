"""Every posting the switch writes, defined once as data: the batched sale finish and the single-row
capture and refund transactions write the entries these functions return."""

from __future__ import annotations

from switch.common.fees import PLATFORM_FEES_ACCOUNT, fee_minor
from switch.store.records import LedgerEntry

PAYOUT_CLEARING_ACCOUNT = "payouts:clearing"
PAYOUT_BANK_ACCOUNT = "bank:payouts"


def _balanced(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    assert sum(entry.amount for entry in entries) == 0, "ledger posting does not balance"
    return entries


def capture(payment_id: str, merchant_id: str, network: str, currency: str, amount: int) -> list[LedgerEntry]:
    """Captured funds: the network owes them to us, and we owe them to the merchant, less our fee."""
    fee = fee_minor(amount)
    merchant = pending_account(merchant_id)
    return _balanced([
        LedgerEntry(f"capture:{payment_id}", payment_id, f"network:{network}:receivable", amount, currency),
        LedgerEntry(f"capture:{payment_id}", payment_id, merchant, -amount, currency),
        LedgerEntry(f"fee:{payment_id}", payment_id, merchant, fee, currency),
        LedgerEntry(f"fee:{payment_id}", payment_id, PLATFORM_FEES_ACCOUNT, -fee, currency),
    ])


def refund(refund_id: str, payment_id: str, merchant_id: str, network: str, currency: str,
           amount: int) -> list[LedgerEntry]:
    """The merchant owes the refund back, from its available balance at once (as with Stripe: refunded
    money is never paid out); the network pays it out to the card."""
    return _balanced([
        LedgerEntry(f"refund:{refund_id}", payment_id, available_account(merchant_id), amount, currency),
        LedgerEntry(f"refund:{refund_id}", payment_id, f"network:{network}:receivable", -amount, currency),
    ])


def release(posting_id: str, payment_id: str, merchant_id: str, currency: str,
            amount_received: int) -> list[LedgerEntry]:
    """A settled payment's net (captured less our fee) moves from the merchant's pending to its available
    balance: for a written-off line, under the line's settlement posting, so undoing the settlement undoes
    it too. A file's settlement (switch.store.settlement.SETTLE) books the same entries in SQL, summed per
    merchant and currency."""
    net = amount_received - fee_minor(amount_received)
    return _balanced([
        LedgerEntry(posting_id, payment_id, pending_account(merchant_id), net, currency),
        LedgerEntry(posting_id, payment_id, available_account(merchant_id), -net, currency),
    ])


def payout(payout_id: str, merchant_id: str, currency: str, amount: int) -> list[LedgerEntry]:
    """A payout booked: what we owe the merchant moves to the clearing account until the bank pays it."""
    return _balanced([
        LedgerEntry(f"payout:{payout_id}", None, available_account(merchant_id), amount, currency),
        LedgerEntry(f"payout:{payout_id}", None, PAYOUT_CLEARING_ACCOUNT, -amount, currency),
    ])


def payout_paid(payout_id: str, currency: str, amount: int) -> list[LedgerEntry]:
    """The bank paid it: the money left our payouts bank account."""
    return _balanced([
        LedgerEntry(f"payout_paid:{payout_id}", None, PAYOUT_CLEARING_ACCOUNT, amount, currency),
        LedgerEntry(f"payout_paid:{payout_id}", None, PAYOUT_BANK_ACCOUNT, -amount, currency),
    ])


def payout_failed(payout_id: str, merchant_id: str, currency: str, amount: int) -> list[LedgerEntry]:
    """The bank could not pay it: the funds are the merchant's available balance again."""
    return _balanced([
        LedgerEntry(f"payout_failed:{payout_id}", None, PAYOUT_CLEARING_ACCOUNT, amount, currency),
        LedgerEntry(f"payout_failed:{payout_id}", None, available_account(merchant_id), -amount, currency),
    ])


def pending_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:payable"


def available_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:available"
