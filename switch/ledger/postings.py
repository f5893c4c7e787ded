"""Every posting the switch writes, defined once as data: the batched sale finish and the single-row
capture and refund transactions write the entries these functions return."""

from __future__ import annotations

from switch.common.fees import PLATFORM_FEES_ACCOUNT, fee_minor
from switch.store.records import LedgerEntry


def _balanced(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    assert sum(entry.amount for entry in entries) == 0, "ledger posting does not balance"
    return entries


def capture(payment_id: str, merchant_id: str, network: str, currency: str, amount: int) -> list[LedgerEntry]:
    """Captured funds: the network owes them to us, and we owe them to the merchant, less our fee."""
    fee = fee_minor(amount)
    merchant = f"merchant:{merchant_id}:payable"
    return _balanced([
        LedgerEntry(f"capture:{payment_id}", payment_id, f"network:{network}:receivable", amount, currency),
        LedgerEntry(f"capture:{payment_id}", payment_id, merchant, -amount, currency),
        LedgerEntry(f"fee:{payment_id}", payment_id, merchant, fee, currency),
        LedgerEntry(f"fee:{payment_id}", payment_id, PLATFORM_FEES_ACCOUNT, -fee, currency),
    ])


def refund(refund_id: str, payment_id: str, merchant_id: str, network: str, currency: str,
           amount: int) -> list[LedgerEntry]:
    """The merchant owes the refund back; the network pays it out to the card."""
    return _balanced([
        LedgerEntry(f"refund:{refund_id}", payment_id, f"merchant:{merchant_id}:payable", amount, currency),
        LedgerEntry(f"refund:{refund_id}", payment_id, f"network:{network}:receivable", -amount, currency),
    ])
