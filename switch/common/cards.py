"""Card data types shared by the switch and the vault: a PAN that masks itself, a masked secret, checks.

Pure code (no I/O). The full PAN exists only inside ``CardNumber`` and leaves it only through
``reveal()``, which is called for encryption in the vault and for the network message in the switch.
Everything else (``str``, ``repr``, ``format``, error messages) shows at most BIN + last 4.
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta, Struct

PAN_LENGTH_MIN = 12
PAN_LENGTH_MAX = 19
BIN_LENGTH = 6
LAST_DIGITS_SHOWN = 4
# At least this many digits stay hidden in a masked PAN: with 6 + 4 shown of a 12-digit PAN and a Luhn
# check digit, only ~10 candidates would remain, so short PANs show fewer leading digits.
HIDDEN_DIGITS_MIN = 6
EXPIRY_YEARS_AHEAD_MAX = 50

CARD_ERROR_CODES = frozenset({
    "invalid_number", "incorrect_number", "unsupported_brand", "invalid_expiry_month",
    "invalid_expiry_year", "expired_card", "invalid_cvc",
})


class CardError(ValueError):
    """A card field failed validation. ``code`` is one of CARD_ERROR_CODES; the message never holds data."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CARD_ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"CardError({self.code!r}, {self.message!r})"


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (ASCII digits only) passes the Luhn (mod 10) check."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# Ordered table: the first rule whose prefix matches decides the brand; if the length does not fit that
# brand the number is unsupported (we do not guess another brand for it). Prefix ranges are inclusive and
# compared on the first len(low) digits.
_BrandRule = tuple[str, tuple[tuple[str, str], ...], frozenset[int]]
_BRAND_RULES: tuple[_BrandRule, ...] = (
    ("visa", (("4", "4"),), frozenset({13, 16, 19})),
    ("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    ("amex", (("34", "34"), ("37", "37")), frozenset({15})),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")),
     frozenset(range(16, 20))),
    ("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    ("diners", (("300", "305"), ("36", "36"), ("38", "39")), frozenset(range(14, 20))),
    ("unionpay", (("62", "62"),), frozenset(range(16, 20))),
    ("maestro", (("50", "50"), ("56", "58"), ("6", "6")), frozenset(range(12, 20))),
)


def _prefix_matches(digits: str, ranges: tuple[tuple[str, str], ...]) -> bool:
    for low, high in ranges:
        head = digits[: len(low)]
        if len(head) == len(low) and low <= head <= high:
            return True
    return False


def detect_brand(digits: str) -> str | None:
    """The card brand for a PAN by BIN range and length, or None when no supported brand fits."""
    for brand, ranges, lengths in _BRAND_RULES:
        if _prefix_matches(digits, ranges):
            return brand if len(digits) in lengths else None
    return None


def mask_digits(digits: str) -> str:
    """At most the BIN and the last 4, and never fewer than HIDDEN_DIGITS_MIN digits hidden."""
    lead = max(0, min(BIN_LENGTH, len(digits) - LAST_DIGITS_SHOWN - HIDDEN_DIGITS_MIN))
    hidden = len(digits) - lead - LAST_DIGITS_SHOWN
    return digits[:lead] + "*" * hidden + digits[-LAST_DIGITS_SHOWN:]


class CardNumber:
    """A validated PAN. Shows itself masked everywhere; ``reveal()`` is the only way to the digits."""

    __slots__ = ("_digits", "_brand")

    def __init__(self, digits: str) -> None:
        if not isinstance(digits, str) or not digits.isascii() or not digits.isdigit():
            raise CardError("invalid_number", "card number must contain digits only")
        if not PAN_LENGTH_MIN <= len(digits) <= PAN_LENGTH_MAX:
            raise CardError("invalid_number",
                            f"card number must have {PAN_LENGTH_MIN} to {PAN_LENGTH_MAX} digits")
        if not luhn_valid(digits):
            raise CardError("incorrect_number", "card number fails the check digit")
        self._digits = digits
        self._brand = detect_brand(digits)

    def reveal(self) -> str:
        """The full PAN. Only for encryption in the vault and for the network message."""
        return self._digits

    @property
    def bin(self) -> str:
        return self._digits[:BIN_LENGTH]

    @property
    def last4(self) -> str:
        return self._digits[-LAST_DIGITS_SHOWN:]

    @property
    def brand(self) -> str | None:
        return self._brand

    @property
    def masked(self) -> str:
        return mask_digits(self._digits)

    def require_brand(self) -> str:
        """The brand, or CardError("unsupported_brand") when no supported brand fits."""
        if self._brand is None:
            raise CardError("unsupported_brand", "card brand is not supported")
        return self._brand

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"CardNumber('{self.masked}')"

    def __format__(self, format_spec: str) -> str:
        return format(self.masked, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CardNumber):
            return NotImplemented
        return hmac.compare_digest(self._digits, other._digits)

    def __hash__(self) -> int:
        return hash(("CardNumber", self._digits))

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the PAN in clear to wherever the pickle goes.
        raise TypeError("CardNumber cannot be pickled")


class SecretStr:
    """A secret (CVC) whose str/repr/format are masked; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretStr holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "SecretStr('***')"

    def __format__(self, format_spec: str) -> str:
        return format("***", format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("SecretStr", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretStr cannot be pickled")


def validate_expiry(month: int, year: int, today: datetime.date | None = None) -> None:
    """Raise CardError unless month/year is a valid, unexpired expiry (a card is valid through its month)."""
    today = today or datetime.datetime.now(datetime.UTC).date()
    if not isinstance(month, int) or isinstance(month, bool) or not 1 <= month <= 12:
        raise CardError("invalid_expiry_month", "expiry month must be 1 to 12")
    if (not isinstance(year, int) or isinstance(year, bool)
            or not 2000 <= year <= today.year + EXPIRY_YEARS_AHEAD_MAX):
        raise CardError("invalid_expiry_year", "expiry year must be a four-digit year")
    if (year, month) < (today.year, today.month):
        raise CardError("expired_card", "card has expired")


def validate_cvc(cvc: SecretStr, brand: str | None) -> None:
    """Raise CardError("invalid_cvc") unless the CVC is 3 digits (4 for amex)."""
    value = cvc.reveal()
    expected_length = 4 if brand == "amex" else 3
    if not value.isascii() or not value.isdigit() or len(value) != expected_length:
        raise CardError("invalid_cvc", f"security code must be {expected_length} digits")


@dataclass(frozen=True, slots=True)
class CardData:
    """A detokenized card, held in memory only for the network call."""

    number: CardNumber
    exp_month: int
    exp_year: int
    brand: str
    last4: str
    cvc: SecretStr | None = None

    @property
    def expiry_yymm(self) -> str:
        """Field 14: the expiry as YYMM."""
        return f"{self.exp_year % 100:02d}{self.exp_month:02d}"


class CardInput(Struct, forbid_unknown_fields=True):
    """Raw card data as a merchant or a checkout page sends it, bounded; it lives only until it is handed
    to the vault. Its repr masks the number (BIN and last 4 at most) and the CVC."""

    number: Annotated[str, Meta(min_length=12, max_length=19, pattern=r"^[0-9]+(?!\n)$")]
    exp_month: Annotated[int, Meta(ge=1, le=12)]
    exp_year: Annotated[int, Meta(ge=2000, le=2099)]
    cvc: Annotated[str, Meta(min_length=3, max_length=4, pattern=r"^[0-9]+(?!\n)$")] | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(number='{mask_digits(self.number)}', exp_month={self.exp_month}, "
                f"exp_year={self.exp_year}, cvc='***')")

    __str__ = __repr__
