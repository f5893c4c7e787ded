"""The platform's merchant fee: 2.9 % of the captured amount, rounded half up, plus 30 minor units.

Taken at capture (a sale is captured when approved) as its own ledger posting, from the merchant's payable
to ``platform:fees``. Refunds do not return it, as with Stripe. The fixed part is in the currency's minor
units (30 cents, 30 yen, 30 fils), and the fee never exceeds the amount captured. Pure: the SQL form below
is the same formula for the statements that post a sale and for `switch ledger check`.
"""

from __future__ import annotations

FEE_RATE_BPS = 290            # 2.9 %, in basis points
FEE_FIXED_MINOR = 30
PLATFORM_FEES_ACCOUNT = "platform:fees"


def fee_minor(captured_minor: int) -> int:
    assert captured_minor >= 0
    return min(captured_minor, (captured_minor * FEE_RATE_BPS + 5_000) // 10_000 + FEE_FIXED_MINOR)


def fee_sql(captured: str) -> str:
    """`fee_minor` as an SQL expression over the bigint expression `captured` (integer division)."""
    return f"LEAST({captured}, ({captured} * {FEE_RATE_BPS} + 5000) / 10000 + {FEE_FIXED_MINOR})"
