"""The simulated issuer: pure decision logic, no I/O. Test card -> outcome, holds, duplicate detection.

Named test cards give fixed outcomes (the approving ones approve without limit, so load tests can
reuse them). Any other Luhn-valid card in the 2-6 BIN range approves until its balance runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

APPROVED = "00"
DO_NOT_HONOR = "05"
INVALID_CARD = "14"
INSUFFICIENT_FUNDS = "51"
LOST_CARD = "41"
STOLEN_CARD = "43"
EXPIRED_CARD = "54"
INCORRECT_CVC = "N7"
PROCESSING_ERROR = "96"

# Test card -> field 39. Mirrors the well-known Stripe-style test numbers.
TEST_CARDS: MappingProxyType[str, str] = MappingProxyType(
    {
        "4242424242424242": APPROVED,
        "5555555555554444": APPROVED,
        "378282246310005": APPROVED,  # Amex
        "6011111111111117": APPROVED,  # Discover
        "3566002020360505": APPROVED,  # JCB
        "36227206271667": APPROVED,  # Diners
        "6200000000000005": APPROVED,  # UnionPay
        "4000000000000002": DO_NOT_HONOR,
        "4000000000009995": INSUFFICIENT_FUNDS,
        "4000000000009987": LOST_CARD,
        "4000000000009979": STOLEN_CARD,
        "4000000000000069": EXPIRED_CARD,
        "4000000000000127": INCORRECT_CVC,
        "4000000000000119": PROCESSING_ERROR,
    }
)

BALANCE_MINOR_DEFAULT = 1_000_000
DUPLICATES_MAX_DEFAULT = 200_000
CARDS_MAX_DEFAULT = 1_000_000


def luhn_valid(pan: str) -> bool:
    if not (12 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):
        return False
    total = 0
    for index, char in enumerate(reversed(pan)):
        digit = ord(char) - 48
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Decision:
    field39: str
    auth_code: str | None
    effect: str  # "hold": funds held; "none": declined; "duplicate": the original decision, not reapplied.
    held_minor: int = 0


class Issuer:
    """Decides authorizations. All state is in bounded dicts; every call is O(1)."""

    def __init__(
        self,
        balance_minor: int = BALANCE_MINOR_DEFAULT,
        duplicates_max: int = DUPLICATES_MAX_DEFAULT,
        cards_max: int = CARDS_MAX_DEFAULT,
    ) -> None:
        self.balance_minor = balance_minor
        self._duplicates_max = duplicates_max
        self._cards_max = cards_max
        # (terminal, STAN, transmission date/time) -> the decision sent back the first time.
        self._decisions: dict[tuple[str, str, str], Decision] = {}
        # Card -> total minor units held. The issuer is the far end: it may know the PAN in memory.
        self._held_minor: dict[str, int] = {}
        self._approvals = 0

    def held_minor(self, pan: str) -> int:
        return self._held_minor.get(pan, 0)

    def authorize(
        self, *, pan: str, amount_minor: int, terminal_id: str, stan: str, transmission_dt: str
    ) -> Decision:
        key = (terminal_id, stan, transmission_dt)
        original = self._decisions.get(key)
        if original is not None:
            return Decision(original.field39, original.auth_code, "duplicate", 0)
        decision = self._decide(pan, amount_minor)
        decisions = self._decisions
        if len(decisions) >= self._duplicates_max:
            del decisions[next(iter(decisions))]  # Forget the oldest (dicts keep insertion order).
        decisions[key] = decision
        return decision

    def _decide(self, pan: str, amount_minor: int) -> Decision:
        outcome = TEST_CARDS.get(pan)
        if outcome is None:
            if not luhn_valid(pan) or pan[0] not in "23456":
                return Decision(INVALID_CARD, None, "none")
            held = self._held_minor.get(pan, 0)
            if held + amount_minor > self.balance_minor:
                return Decision(INSUFFICIENT_FUNDS, None, "none")
        elif outcome != APPROVED:
            return Decision(outcome, None, "none")
        return self._approve(pan, amount_minor)

    def _approve(self, pan: str, amount_minor: int) -> Decision:
        held = self._held_minor
        if pan not in held and len(held) >= self._cards_max:
            del held[next(iter(held))]
        held[pan] = held.get(pan, 0) + amount_minor
        self._approvals += 1
        return Decision(APPROVED, _auth_code(self._approvals), "hold", amount_minor)


_AUTH_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _auth_code(number: int) -> str:
    """Six characters, unique for the first 34**6 approvals of a run."""
    chars = []
    for _ in range(6):
        number, digit = divmod(number, len(_AUTH_CODE_ALPHABET))
        chars.append(_AUTH_CODE_ALPHABET[digit])
    return "".join(reversed(chars))
