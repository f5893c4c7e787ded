"""What the fraud screen knows about a payment: its attributes (the names rules use), the BIN range table
the switch ships (issuing country and funding type), and a fixed rate table for amounts in US dollars.

docs/fraud.md lists every attribute. Card attributes come from the card in memory; no attribute holds the
PAN, and `card_fingerprint` is keyed per merchant, so it tells one merchant's cards apart and nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from switch.common.currency import lookup as lookup_currency
from switch.fraud.rules import Kind, Value
from switch.fraud.velocity import ATTRIBUTES as VELOCITY_ATTRIBUTES

NUMBER, TEXT, FLAG = Kind.NUMBER, Kind.TEXT, Kind.FLAG

ATTRIBUTES: dict[str, Kind] = {
    "amount": NUMBER,               # minor units of the payment's currency
    "amount_usd": NUMBER,           # US dollars at the fixed rate table (missing for a currency not in it)
    "currency": TEXT,
    "capture_method": TEXT,
    "card_brand": TEXT,
    "card_bin": TEXT,               # the first six digits
    "card_country": TEXT,           # issuing country (ISO 3166 alpha-2) from the BIN table
    "card_funding": TEXT,           # credit | debit | prepaid, where the BIN table knows it
    "card_fingerprint": TEXT,
    "merchant_country": TEXT,
    "ip_address": TEXT,
    "email": TEXT,
    "email_domain": TEXT,
    "is_cross_border": FLAG,        # the card's country is not the merchant's
    "card_testing": FLAG,           # the merchant is in a card-testing cool-off (tightened screening)
    "risk_score": NUMBER,
    "risk_level": TEXT,             # normal | elevated | highest
    **{name: NUMBER for name in VELOCITY_ATTRIBUTES},
}

# How a payment's signals are stored (`payments.signals`): a msgpack array, the format's version first,
# then each attribute's value in the version's order (nil where the payment had none): about 100 bytes,
# where a map with the names was over 500. A new attribute is a new version; old rows keep reading.
STORED_ORDERS: dict[int, tuple[str, ...]] = {1: (
    "amount", "amount_usd", "currency", "capture_method", "card_brand", "card_bin", "card_country",
    "card_funding", "card_fingerprint", "merchant_country", "ip_address", "email", "email_domain",
    "is_cross_border", "card_testing", "risk_score", "risk_level",
    "card_velocity_1m", "card_velocity_1h", "card_velocity_24h", "card_amount_usd_1h", "card_amount_usd_24h",
    "card_declines_1h", "ip_velocity_1m", "ip_velocity_1h", "ip_velocity_24h", "ip_declines_1h",
    "email_velocity_1h", "email_velocity_24h", "merchant_velocity_1m", "merchant_declines_1m", "merchant_small_1m",
    "ip_cards_1h")}
STORED_VERSION = 1
_STORED_ORDER = STORED_ORDERS[STORED_VERSION]
_packer = msgspec.msgpack.Encoder()


class ScreenSignals(dict[str, Value]):
    """A payment's signals as the screen makes them: every attribute, in the stored order, None where the
    payment has none (a rule and the risk score read None as missing). So they are stored as they stand,
    without a lookup per attribute (pack_signals: 0.45 µs where looking up each of 33 names took 1.2)."""

    __slots__ = ()


_BLANK = ScreenSignals(dict.fromkeys(_STORED_ORDER))


def blank_signals() -> ScreenSignals:
    return ScreenSignals(_BLANK)


def pack_signals(signals: Mapping[str, object]) -> bytes:
    # Signals the screen made, still holding no attribute but the stored ones, are already in their order.
    if type(signals) is ScreenSignals and len(signals) == len(_STORED_ORDER):
        return _packer.encode([STORED_VERSION, *signals.values()])
    return _packer.encode([STORED_VERSION, *map(signals.get, _STORED_ORDER)])


def unpack_signals(stored: bytes | None) -> dict[str, Value]:
    """Signals as stored ({} for a payment that was not screened)."""
    if not stored:
        return {}
    version, *values = msgspec.msgpack.decode(stored)
    return {name: value for name, value in zip(STORED_ORDERS[version], values, strict=True) if value is not None}

SMALL_AMOUNT_USD = 5.0

# US dollars per unit of each currency: a fixed table, as Radar's :amount_in_usd: is an approximation too.
USD_PER_UNIT: dict[str, float] = {
    "usd": 1.0, "eur": 1.08, "gbp": 1.27, "chf": 1.13, "cad": 0.73, "aud": 0.66, "nzd": 0.61, "jpy": 0.0067,
    "cny": 0.14, "hkd": 0.128, "sgd": 0.74, "sek": 0.095, "nok": 0.093, "dkk": 0.145, "pln": 0.25,
    "czk": 0.043, "huf": 0.0028, "inr": 0.012, "brl": 0.2, "mxn": 0.058, "zar": 0.054, "krw": 0.00075,
    "aed": 0.272, "sar": 0.267, "try": 0.031, "ils": 0.27, "thb": 0.028, "myr": 0.21, "php": 0.018,
}

# BIN ranges: (first digits, issuing country, funding type). The longest prefix wins. The simulator's test
# cards and Radar's are here, with the brands' broad ranges as the fallback.
_BIN_TABLE = """
424242 US credit|400000 US credit|410000 US credit|401288 US credit|400005 US debit|405566 GB debit
400055 US prepaid|4000056 US debit|403587 FR credit|4000002500 FR credit|4000003800 BE credit|4000005280 DE credit
555555 US credit|520082 US debit|510510 US prepaid|522222 GB credit|530060 DE debit|545454 CA credit
378282 US credit|371449 US credit|601111 US credit|356600 JP credit|362272 US credit|620000 CN debit
4 US credit|51 US credit|52 US credit|53 US credit|54 US credit|55 US credit|2 US credit|34 US credit
37 US credit|6011 US credit|65 US credit|35 JP credit|36 US credit|62 CN debit
"""
BIN_RANGES: dict[str, tuple[str, str]] = {
    prefix: (country, funding) for prefix, country, funding in
    (entry.split() for line in _BIN_TABLE.strip().splitlines() for entry in line.split("|"))}
_PREFIX_LENGTHS = sorted({len(prefix) for prefix in BIN_RANGES}, reverse=True)


def issuer_of(number: str) -> tuple[str, str] | tuple[None, None]:
    """(country, funding) of the card's BIN range, or (None, None) when the table has no range for it."""
    for length in _PREFIX_LENGTHS:
        found = BIN_RANGES.get(number[:length])
        if found is not None:
            return found
    return None, None


def _per_minor_unit(currency: str, rate: float) -> tuple[int, float] | None:
    known = lookup_currency(currency)
    return None if known is None else (10 ** known.exponent, rate)


# currency -> (minor units per unit, US dollars per unit), worked out once
_USD_RATES = {currency: found for currency, rate in USD_PER_UNIT.items()
              if (found := _per_minor_unit(currency, rate)) is not None}


def amount_usd(amount: int, currency: str) -> float | None:
    found = _USD_RATES.get(currency)
    if found is None:
        return None
    return round(amount / found[0] * found[1], 2)
