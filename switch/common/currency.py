"""ISO 4217 currencies: the numeric code for field 49 and the minor-unit exponent for amounts."""

from __future__ import annotations

from typing import NamedTuple


class Currency(NamedTuple):
    code: str        # lower-case alphabetic code, as merchants send it
    numeric: str     # field 49
    exponent: int    # minor units: USD 2 (cents), JPY 0, BHD 3


_TABLE = """
aed 784 2|aud 036 2|bhd 048 3|brl 986 2|cad 124 2|chf 756 2|clp 152 0|cny 156 2|czk 203 2|dkk 208 2
egp 818 2|eur 978 2|gbp 826 2|hkd 344 2|huf 348 2|idr 360 2|ils 376 2|inr 356 2|iqd 368 3|isk 352 0
jod 400 3|jpy 392 0|kes 404 2|krw 410 0|kwd 414 3|lyd 434 3|mad 504 2|mxn 484 2|myr 458 2|ngn 566 2
nok 578 2|nzd 554 2|omr 512 3|php 608 2|pkr 586 2|pln 985 2|qar 634 2|ron 946 2|sar 682 2|sek 752 2
sgd 702 2|thb 764 2|tnd 788 3|try 949 2|twd 901 2|uah 980 2|ugx 800 0|usd 840 2|vnd 704 0|xaf 950 0
xof 952 0|zar 710 2
"""

_ENTRIES = (entry.split() for line in _TABLE.strip().splitlines() for entry in line.split("|"))
CURRENCIES: dict[str, Currency] = {code: Currency(code, numeric, int(exponent)) for code, numeric, exponent in _ENTRIES}

# The largest amount field 4 (12 digits) can carry, in minor units.
AMOUNT_MAX = 999_999_999_999


def lookup(code: str) -> Currency | None:
    return CURRENCIES.get(code)
