"""The simulated issuer: pure decision logic, no I/O. The whole lifecycle of a card payment.

Named test cards give fixed outcomes (the approving ones approve without limit, so load tests can
reuse them). Any other Luhn-valid card in the 2-6 BIN range approves until its balance runs out.

An original transaction (0100 authorization, 0200 sale or refund) is remembered under
(original MTI, terminal, STAN, transmission date/time): a second copy of it is a duplicate answered with
the first decision, and completions (0220/0221) and reversals (0400/0420/0421) find it by the same key,
taken from their field 90. Each effect applies once. Holds follow: placed by an approved 0100, then
captured (the rest released) or released by a reversal; so at any time
    held == captured + released + expired + outstanding
where `expired` counts holds forgotten because the bounded memory was full.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from switch.common import cards

APPROVED = "00"
DO_NOT_HONOR = "05"
INVALID_CARD = "14"
INSUFFICIENT_FUNDS = "51"
LOST_CARD = "41"
STOLEN_CARD = "43"
EXPIRED_CARD = "54"
INCORRECT_CVC = "N7"
INVALID_TRANSACTION = "12"
INVALID_AMOUNT = "13"
UNABLE_TO_LOCATE = "25"
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
UNSETTLED_MAX_DEFAULT = 2_000_000

MTI_AUTHORIZATION = "0100"
MTI_FINANCIAL = "0200"

# (original MTI, terminal id, STAN, transmission date/time): one original transaction.
TransactionKey = tuple[str, str, str, str]


def luhn_valid(pan: str) -> bool:
    """A card number the issuer could have issued: 12-19 digits passing the switch's Luhn check."""
    return cards.PAN_LENGTH_MIN <= len(pan) <= cards.PAN_LENGTH_MAX and cards.luhn_valid(pan)


def known_card(pan: str) -> bool:
    """Luhn-valid with a BIN in the 2-6 range (Mastercard 2-series up to UnionPay)."""
    return luhn_valid(pan) and pan[0] in "23456"


@dataclass(frozen=True, slots=True)
class Decision:
    """What one message did. Amounts are what *this* message moved, except `remaining_minor`."""

    field39: str
    auth_code: str | None
    # "hold", "sale", "refund", "capture", "reversal"; "none": declined or nothing to do;
    # "duplicate": a repeat, answered as the first time and not applied again.
    effect: str
    held_minor: int = 0  # Hold placed (0100).
    captured_minor: int = 0  # Funds taken: a sale, or the captured part of a hold.
    released_minor: int = 0  # Hold released: the uncaptured rest, or reversed.
    refunded_minor: int = 0  # Credited to the card (0200 refund).
    reversed_minor: int = 0  # Funds taken or credited earlier and given back by a reversal.
    remaining_minor: int = 0  # Hold still outstanding on the original after this message.


@dataclass(slots=True)
class Account:
    held_minor: int = 0
    spent_minor: int = 0  # Captured and sold, less refunds and reversals of them.


@dataclass(slots=True)
class Transaction:
    """One original message and what is left of it."""

    kind: str  # "authorization", "sale" or "refund"
    field39: str
    amount_minor: int
    card_last4: str
    rrn: str
    auth_code: str | None = None
    account: Account | None = None  # Set when approved.
    held_minor: int = 0
    moved_minor: int = 0  # Captured (authorization), sold (sale) or credited (refund), after reversals.
    completed: bool = False
    reversed_to: int | None = None  # The amount the last applied reversal left (0: fully reversed).
    network: str = ""
    currency: str = ""  # ISO 4217 numeric, as in field 49.
    created_at: float = 0.0  # Unix time the original was decided.
    settled_minor: int = 0  # The part of moved_minor already written to a settlement file.


class Issuer:
    """Decides and applies every message. All state is in bounded dicts; every call is O(1)."""

    def __init__(
        self,
        balance_minor: int = BALANCE_MINOR_DEFAULT,
        duplicates_max: int = DUPLICATES_MAX_DEFAULT,
        cards_max: int = CARDS_MAX_DEFAULT,
        unsettled_max: int = UNSETTLED_MAX_DEFAULT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert duplicates_max > 0 and cards_max > 0 and unsettled_max > 0
        self.balance_minor = balance_minor
        self._duplicates_max = duplicates_max
        self._cards_max = cards_max
        self._unsettled_max = unsettled_max
        self._clock = clock
        # Originals whose moved amount changed since the last settlement cut-off (see take_unsettled).
        # OrderedDicts where the oldest entry is dropped: a plain dict's first entry sits behind every slot
        # deleted before it until the next resize, so dropping from the front costs O(n) (the soak's decay).
        self._unsettled: OrderedDict[TransactionKey, Transaction] = OrderedDict()
        self.unsettled_dropped = 0  # Forgotten because _unsettled was full: missing from settlement files.
        # Original transactions, oldest first, including declined ones (their duplicates get the same answer).
        self._transactions: OrderedDict[TransactionKey, Transaction] = OrderedDict()
        # The subset with a hold outstanding.
        self._holds: dict[TransactionKey, Transaction] = {}
        # Card -> held and spent. The issuer is the far end: it may know the PAN in memory.
        self._accounts: OrderedDict[str, Account] = OrderedDict()
        self._approvals = 0
        self.held_outstanding_minor = 0
        # Running sums in minor units: held, captured, released, expired, sold, refunded, and what reversals
        # gave back: capture_reversed, sale_reversed, refund_reversed.
        self.totals: Counter[str] = Counter()

    # Read side (control API, tests).

    def held_minor(self, pan: str) -> int:
        account = self._accounts.get(pan)
        return account.held_minor if account is not None else 0

    def spent_minor(self, pan: str) -> int:
        account = self._accounts.get(pan)
        return account.spent_minor if account is not None else 0

    def holds(self, *, limit: int, **filters: str) -> list[dict[str, Any]]:
        """Outstanding holds, oldest first, card data as last 4 digits. A scan: never on the message path."""
        found: list[dict[str, Any]] = []
        for (_, terminal_id, stan, transmitted_at), txn in self._holds.items():
            hold = {
                "rrn": txn.rrn, "stan": stan, "terminal_id": terminal_id, "transmitted_at": transmitted_at,
                "card_last4": txn.card_last4, "amount_minor": txn.amount_minor, "held_minor": txn.held_minor,
                "auth_code": txn.auth_code,
            }  # fmt: skip
            if all(hold.get(key) == value for key, value in filters.items()):
                found.append(hold)
                if len(found) >= limit:
                    break
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "holds_outstanding": len(self._holds),
            "held_outstanding_minor": self.held_outstanding_minor,
            "transactions": len(self._transactions),
            "totals": dict(self.totals),
        }

    def transactions(self, *, limit: int, **filters: str) -> list[dict[str, Any]]:
        """Original transactions (oldest first) and what is left of each: `moved_minor` is what it took
        (capture, sale) or credited (refund) after reversals. A scan: never on the message path."""
        found: list[dict[str, Any]] = []
        for (mti, terminal_id, stan, transmitted_at), txn in self._transactions.items():
            row = {
                "network": txn.network, "mti": mti, "kind": txn.kind, "rrn": txn.rrn, "stan": stan,
                "terminal_id": terminal_id, "transmitted_at": transmitted_at, "card_last4": txn.card_last4,
                "field39": txn.field39, "auth_code": txn.auth_code, "amount_minor": txn.amount_minor,
                "currency": txn.currency, "held_minor": txn.held_minor, "moved_minor": txn.moved_minor,
                "completed": txn.completed, "reversed_to": txn.reversed_to,
            }  # fmt: skip
            if all(row.get(key) == value for key, value in filters.items()):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def reversed_originals(self, limit: int = 1_000) -> list[tuple[TransactionKey, Transaction]]:
        """Approved authorizations and sales that a reversal later undid in full (a drill plants a settlement
        line for one). A scan: never on the message path."""
        found = []
        for key, txn in self._transactions.items():
            if txn.kind in ("authorization", "sale") and txn.field39 == APPROVED and txn.reversed_to == 0:
                found.append((key, txn))
                if len(found) >= limit:
                    break
        return found

    def take_unsettled(self) -> list[tuple[TransactionKey, Transaction, int]]:
        """For a settlement cut-off: every original whose moved amount changed since the last one, with
        the change (negative when a reversal came after the amount was settled). Marks them settled."""
        taken: list[tuple[TransactionKey, Transaction, int]] = []
        for key, txn in self._unsettled.items():
            change_minor = txn.moved_minor - txn.settled_minor
            if change_minor:
                txn.settled_minor = txn.moved_minor
                taken.append((key, txn, change_minor))
        self._unsettled.clear()
        return taken

    # Original messages: 0100 and 0200.

    def authorize(
        self, *, pan: str, amount_minor: int, terminal_id: str, stan: str, transmission_dt: str, rrn: str = "",
        network: str = "", currency: str = "",
    ) -> Decision:
        """0100: approve and hold, or decline."""
        key = (MTI_AUTHORIZATION, terminal_id, stan, transmission_dt)
        return self._original(key, "authorization", pan, amount_minor, rrn, network, currency)

    def sale(
        self, *, pan: str, amount_minor: int, terminal_id: str, stan: str, transmission_dt: str, rrn: str = "",
        network: str = "", currency: str = "",
    ) -> Decision:
        """0200 purchase: authorize and capture at once; same card outcomes as an 0100."""
        key = (MTI_FINANCIAL, terminal_id, stan, transmission_dt)
        return self._original(key, "sale", pan, amount_minor, rrn, network, currency)

    def refund(
        self, *, pan: str, amount_minor: int, terminal_id: str, stan: str, transmission_dt: str, rrn: str = "",
        network: str = "", currency: str = "",
    ) -> Decision:
        """0200 refund: credit any known card (no earlier sale needed)."""
        key = (MTI_FINANCIAL, terminal_id, stan, transmission_dt)
        return self._original(key, "refund", pan, amount_minor, rrn, network, currency)

    def _original(
        self, key: TransactionKey, kind: str, pan: str, amount_minor: int, rrn: str, network: str, currency: str
    ) -> Decision:
        known = self._transactions.get(key)
        if known is not None:
            return Decision(known.field39, known.auth_code, "duplicate", remaining_minor=known.held_minor)
        if kind == "refund":
            field39 = APPROVED if known_card(pan) else INVALID_CARD
        else:
            field39 = self._verdict(pan, amount_minor)
        txn = Transaction(
            kind, field39, amount_minor, pan[-4:], rrn, network=network, currency=currency, created_at=self._clock()
        )
        self._remember(key, txn)
        if field39 != APPROVED:
            return Decision(field39, None, "none")
        account = self._account(pan)
        self._approvals += 1
        txn.auth_code = _auth_code(self._approvals)
        txn.account = account
        if kind == "authorization":
            txn.held_minor = amount_minor
            account.held_minor += amount_minor
            self._holds[key] = txn
            self.held_outstanding_minor += amount_minor
            self.totals["held"] += amount_minor
            return Decision(
                APPROVED, txn.auth_code, "hold", held_minor=amount_minor, remaining_minor=amount_minor
            )
        txn.moved_minor = amount_minor
        self._mark_unsettled(key, txn)
        if kind == "sale":
            account.spent_minor += amount_minor
            self.totals["sold"] += amount_minor
            return Decision(APPROVED, txn.auth_code, "sale", captured_minor=amount_minor)
        account.spent_minor -= amount_minor
        self.totals["refunded"] += amount_minor
        return Decision(APPROVED, txn.auth_code, "refund", refunded_minor=amount_minor)

    def _verdict(self, pan: str, amount_minor: int) -> str:
        outcome = TEST_CARDS.get(pan)
        if outcome is not None:
            return outcome  # Named cards: fixed outcome, approving ones without limit.
        if not known_card(pan):
            return INVALID_CARD
        account = self._accounts.get(pan)
        used = account.held_minor + account.spent_minor if account is not None else 0
        return INSUFFICIENT_FUNDS if used + amount_minor > self.balance_minor else APPROVED

    def _account(self, pan: str) -> Account:
        accounts = self._accounts
        account = accounts.get(pan)
        if account is None:
            if len(accounts) >= self._cards_max:
                accounts.popitem(last=False)  # Forget the oldest card.
            account = accounts[pan] = Account()
        return account

    def _remember(self, key: TransactionKey, txn: Transaction) -> None:
        transactions = self._transactions
        if len(transactions) >= self._duplicates_max:
            old_key, old = transactions.popitem(last=False)
            if self._holds.pop(old_key, None) is not None:
                self._release(old, old.held_minor, "expired")
        transactions[key] = txn

    def _release(self, txn: Transaction, amount_minor: int, total: str) -> None:
        if not amount_minor:
            return
        txn.held_minor -= amount_minor
        if txn.account is not None:
            txn.account.held_minor -= amount_minor
        self.held_outstanding_minor -= amount_minor
        self.totals[total] += amount_minor

    def _mark_unsettled(self, key: TransactionKey, txn: Transaction) -> None:
        unsettled = self._unsettled
        if key not in unsettled and len(unsettled) >= self._unsettled_max:
            unsettled.popitem(last=False)
            self.unsettled_dropped += 1
        unsettled[key] = txn

    # Messages about an original: 0220/0221 and 0400/0420/0421.

    def complete(
        self, *, terminal_id: str, original_mti: str, original_stan: str, original_dt: str, amount_minor: int
    ) -> Decision:
        """Capture `amount_minor` of the hold of an approved 0100 and release the rest. Applies once."""
        key = (original_mti, terminal_id, original_stan, original_dt)
        txn = self._transactions.get(key)
        if txn is None:
            return Decision(UNABLE_TO_LOCATE, None, "none")
        if txn.completed:
            return Decision(APPROVED, txn.auth_code, "duplicate")
        if txn.kind != "authorization" or txn.field39 != APPROVED or txn.reversed_to == 0:
            return Decision(INVALID_TRANSACTION, None, "none", remaining_minor=txn.held_minor)
        if amount_minor > txn.held_minor:
            return Decision(INVALID_AMOUNT, None, "none", remaining_minor=txn.held_minor)
        release_minor = txn.held_minor - amount_minor
        self._release(txn, amount_minor, "captured")
        self._release(txn, release_minor, "released")
        self._holds.pop(key, None)
        assert txn.account is not None
        txn.account.spent_minor += amount_minor
        txn.moved_minor = amount_minor
        txn.completed = True
        self._mark_unsettled(key, txn)
        return Decision(
            APPROVED, txn.auth_code, "capture", captured_minor=amount_minor, released_minor=release_minor
        )

    def reverse(
        self,
        *,
        terminal_id: str,
        original_mti: str,
        original_stan: str,
        original_dt: str,
        replacement_minor: int = 0,
    ) -> Decision:
        """Reverse an 0100 or 0200 down to `replacement_minor` (0: all of it). Applies once."""
        key = (original_mti, terminal_id, original_stan, original_dt)
        txn = self._transactions.get(key)
        if txn is None:
            return Decision(UNABLE_TO_LOCATE, None, "none")
        if txn.field39 != APPROVED:
            return Decision(APPROVED, None, "none")  # Declined: nothing to reverse, but it is acknowledged.
        if txn.reversed_to is not None and replacement_minor >= txn.reversed_to:
            return Decision(APPROVED, txn.auth_code, "duplicate", remaining_minor=txn.held_minor)
        if replacement_minor > txn.amount_minor:
            return Decision(INVALID_AMOUNT, None, "none", remaining_minor=txn.held_minor)
        txn.reversed_to = replacement_minor
        account = txn.account
        assert account is not None
        released_minor = max(0, txn.held_minor - replacement_minor)
        if released_minor:
            self._release(txn, released_minor, "released")
            if txn.held_minor == 0:
                self._holds.pop(key, None)
        reversed_minor = max(0, txn.moved_minor - replacement_minor)
        if reversed_minor:
            txn.moved_minor -= reversed_minor
            self._mark_unsettled(key, txn)
            if txn.kind == "refund":
                account.spent_minor += reversed_minor
                self.totals["refund_reversed"] += reversed_minor
            else:
                account.spent_minor -= reversed_minor
                self.totals["capture_reversed" if txn.kind == "authorization" else "sale_reversed"] += (
                    reversed_minor
                )
        return Decision(
            APPROVED, txn.auth_code, "reversal", released_minor=released_minor, reversed_minor=reversed_minor,
            remaining_minor=txn.held_minor,
        )  # fmt: skip


_AUTH_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _auth_code(number: int) -> str:
    """Six characters, unique for the first 34**6 approvals of a run."""
    chars = []
    for _ in range(6):
        number, digit = divmod(number, len(_AUTH_CODE_ALPHABET))
        chars.append(_AUTH_CODE_ALPHABET[digit])
    return "".join(reversed(chars))
