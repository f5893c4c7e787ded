"""The platform fee: 2.9 % rounded half up, plus 30 minor units, never more than the amount captured."""

from __future__ import annotations

import pytest

from switch.common.fees import fee_minor, fee_sql


@pytest.mark.parametrize(("captured", "fee"), [
    (10_000, 320),      # 290 + 30
    (7_300, 242),       # 211.7 -> 212, + 30
    (1_000, 59),        # 29 + 30 (JPY: minor units are yen)
    (50, 31),           # 1.45 -> 1, + 30
    (52, 32),           # 1.508 -> 2, + 30
    (20, 20),           # capped at the amount
    (0, 0),
])
def test_fee_minor(captured: int, fee: int) -> None:
    assert fee_minor(captured) == fee


def test_sql_form_uses_the_same_constants() -> None:
    assert fee_sql("x") == "LEAST(x, (x * 290 + 5000) / 10000 + 30)"
