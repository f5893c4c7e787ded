"""The balance postings as data: each sums to zero, a release moves exactly the captured amount less our fee
from pending to available, and a payout's life (booked, then paid or failed) leaves the clearing account
empty and the merchant's available balance as it should be."""

from __future__ import annotations

from collections import Counter

import pytest

from switch.common.fees import fee_minor
from switch.ledger import postings


def _sums(*entries: list) -> Counter[str]:  # type: ignore[type-arg]
    totals: Counter[str] = Counter()
    for batch in entries:
        for entry in batch:
            totals[entry.account] += entry.amount
    return totals


@pytest.mark.parametrize(("currency", "captured"), [("usd", 10_000), ("jpy", 500), ("bhd", 12_345), ("usd", 20)])
def test_a_release_moves_the_net_of_a_capture_from_pending_to_available(currency: str, captured: int) -> None:
    capture = postings.capture("pay_1", "acct_1", "visa", currency, captured)
    release = postings.release("settle:1:2", "pay_1", "acct_1", currency, captured)
    totals = _sums(capture, release)
    assert totals["merchant:acct_1:payable"] == 0                 # nothing pending once settled
    assert totals["merchant:acct_1:available"] == -(captured - fee_minor(captured))
    assert {entry.posting_id for entry in release} == {"settle:1:2"}


def test_a_paid_payout_empties_clearing_and_a_failed_one_gives_the_funds_back() -> None:
    booked = postings.payout("po_1", "acct_1", "usd", 700)
    paid = _sums(booked, postings.payout_paid("po_1", "usd", 700))
    assert (paid["merchant:acct_1:available"], paid["payouts:clearing"], paid["bank:payouts"]) == (700, 0, -700)
    failed = _sums(booked, postings.payout_failed("po_1", "acct_1", "usd", 700))
    assert (failed["merchant:acct_1:available"], failed["payouts:clearing"], failed["bank:payouts"]) == (0, 0, 0)


def test_a_refund_comes_out_of_the_available_balance() -> None:
    totals = _sums(postings.refund("re_1", "pay_1", "acct_1", "visa", "usd", 400))
    assert totals["merchant:acct_1:available"] == 400 and totals["merchant:acct_1:payable"] == 0
