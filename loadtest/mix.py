"""The traffic `make bench` sends by default: a Black-Friday mix rather than the cheapest path alone.

Each payment is drawn at random (a seeded generator per request loop, so a run is repeatable):
- FIRST_TIME_PCT first-time customers: a card number never sent before (NewCards), raw, so the vault
  tokenizes and stores it; Visa, Mastercard and Discover (a brand without a network of its own: the
  switch routes it to the fallback network) in turn;
- SAVED_PCT returning customers: one of the vault tokens made before the run, of the simulator's
  approving named cards (approved without a spending limit, so thousands of payments each stay approved);
- the rest declined: the simulator's decline cards (do not honor, insufficient funds, expired, lost),
  answered 402.
Of the approved ones, CAPTURE_LATER_PCT are authorized only and captured by a second request (every other
one in part), REFUND_PCT are paid at once and then partly refunded; the others are paid at once
(automatic capture). A payment counts once however many requests it took; captures and refunds are
counted as follow-ups.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable
from typing import NamedTuple

FIRST_TIME_PCT = 50
SAVED_PCT = 40
CAPTURE_LATER_PCT = 20
REFUND_PCT = 5
AMOUNT_MINOR = 1999
PARTIAL_CAPTURE_MINOR = 1500
REFUND_MINOR = 500
EXPIRY = {"exp_month": 12, "exp_year": 2030, "cvc": "123"}
# The simulator's approving named cards (acquirer_sim.issuer.TEST_CARDS): the returning customers' cards.
SAVED_CARDS = ("4242424242424242", "5555555555554444", "6011111111111117", "378282246310005", "3566002020360505")
# ... and its declining ones: 05 do not honor, 51 insufficient funds, 54 expired, 41 lost.
DECLINE_CARDS = ("4000000000000002", "4000000000009995", "4000000000000069", "4000000000009987")
# First-time cards: Visa, Mastercard (51-55) and Discover.
NEW_CARD_PREFIXES = ("4", "5", "6011")
NUMBER_SLOT = "0" * 16      # where a new card's number goes in the encoded body


class NewCards:
    """A distinct Luhn-valid 16-digit card number per call: the brand's `prefix`, random digits of this run
    up to 7 in all (the first of them not 0), an 8-digit counter and the check digit. In the simulator's
    approving 2-6 range and never one of its named test cards (those whose 7 first digits could be such a
    prefix would need a counter of 11 million or more), so each approves and the vault stores a new row for
    each. About 2 us a number: the sum of the fixed digits is worked out once."""

    COUNTER_DIGITS = 8
    PREFIX_DIGITS = 7

    def __init__(self, prefix: str = "4") -> None:
        if prefix == "5":
            prefix += str(1 + secrets.randbelow(5))     # Mastercard's 51-55
        randoms = self.PREFIX_DIGITS - len(prefix)
        self.prefix = prefix + (str(10 ** (randoms - 1) + secrets.randbelow(9 * 10 ** (randoms - 1)))
                                if randoms > 0 else "")
        self.count = 0
        # Luhn from the right: the check digit is position 0, so the counter's last digit is doubled.
        self._prefix_sum = luhn_sum(self.prefix, first_doubled=self.COUNTER_DIGITS % 2 == 0)

    def next(self) -> str:
        self.count += 1
        counter = f"{self.count:0{self.COUNTER_DIGITS}d}"
        total = self._prefix_sum + luhn_sum(counter, first_doubled=True)
        return f"{self.prefix}{counter}{(10 - total % 10) % 10}"


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_sum(digits: str, *, first_doubled: bool) -> int:
    """Luhn sum of `digits` as they sit in a number whose check digit is still to come: the last of them is
    doubled when `first_doubled`, then every other one going left."""
    total = 0
    doubled = first_doubled
    for char in reversed(digits):
        total += _DOUBLED[ord(char) - 48] if doubled else ord(char) - 48
        doubled = not doubled
    return total


def card_body(fields: dict[str, object], cards: NewCards) -> Callable[[], bytes]:
    """Request bodies with `fields` and a new card number each; the JSON is encoded once and each number
    spliced into it."""
    card = {"number": NUMBER_SLOT, **EXPIRY}
    head, tail = json.dumps({**fields, "payment_method": {"card": card}}).encode().split(NUMBER_SLOT.encode())
    return lambda: head + cards.next().encode() + tail


class Step(NamedTuple):
    """One payment to send: its kind, its body, what follows it once approved (None, "capture" or
    "refund") and the status it is answered with when all is well."""

    kind: str
    body: bytes
    follow: str | None
    expected: int


class Mix:
    """The payments of one request loop, drawn with `seed`."""

    def __init__(self, tokens: list[str], seed: int) -> None:
        assert tokens
        self.random = random.Random(seed)
        self.tokens = tokens
        paid = {"amount": AMOUNT_MINOR, "currency": "usd"}
        later = {**paid, "capture_method": "manual"}
        brands = [NewCards(prefix) for prefix in NEW_CARD_PREFIXES]
        self.first_time = {capture: [card_body(fields, cards) for cards in brands]
                           for capture, fields in (("now", paid), ("later", later))}
        self.saved = {capture: [json.dumps({**fields, "payment_method": token}).encode() for token in tokens]
                      for capture, fields in (("now", paid), ("later", later))}
        self.declines = [json.dumps({**paid, "payment_method": {"card": {"number": number, **EXPIRY}}}).encode()
                         for number in DECLINE_CARDS]

    def next(self) -> Step:
        draw = self.random.randrange(100)
        if draw >= FIRST_TIME_PCT + SAVED_PCT:
            return Step("decline", self.random.choice(self.declines), None, 402)
        after = self.random.randrange(100)
        follow = "capture" if after < CAPTURE_LATER_PCT else "refund" if after < CAPTURE_LATER_PCT + REFUND_PCT \
            else None
        capture = "later" if follow == "capture" else "now"
        if draw < FIRST_TIME_PCT:
            return Step("first_time", self.random.choice(self.first_time[capture])(), follow, 200)
        return Step("saved", self.random.choice(self.saved[capture]), follow, 200)

    def follow_up(self, step: Step, payment_id: str) -> tuple[str, bytes]:
        """The second request of a payment `step` made: (path, body)."""
        if step.follow == "capture":
            partial = self.random.randrange(2) == 0
            body = json.dumps({"amount_to_capture": PARTIAL_CAPTURE_MINOR}).encode() if partial else b"{}"
            return f"/v1/payments/{payment_id}/capture", body
        return "/v1/refunds", json.dumps({"payment": payment_id, "amount": REFUND_MINOR}).encode()
