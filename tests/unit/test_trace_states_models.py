"""Pure logic: trace numbers, the state table, validation error paths, currencies."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch import models, states
from switch.common.currency import CURRENCIES, lookup
from switch.common.errors import ApiError
from switch.trace import trace_for


@given(st.integers(min_value=1, max_value=10**13), st.integers(min_value=1, max_value=10**13))
def test_distinct_counters_give_distinct_terminal_stan_pairs_and_rrns(a: int, b: int) -> None:
    if a == b:
        return
    first, second = trace_for(a), trace_for(b)
    if max(a, b) < 10**12:
        assert (first.terminal_id, first.stan) != (second.terminal_id, second.stan)
        assert first.rrn != second.rrn


def test_trace_shapes() -> None:
    trace = trace_for(3_000_042)
    assert (trace.terminal_id, trace.stan, trace.rrn) == ("SW000003", "000042", "000003000042")
    assert len(trace.terminal_id) == 8 and len(trace.rrn) == 12


def test_state_table_allows_only_listed_moves() -> None:
    assert states.apply("requires_capture", states.Event.CAPTURED) == states.Status.SUCCEEDED
    with pytest.raises(ApiError) as error:
        states.apply("succeeded", states.Event.CAPTURED)
    assert error.value.code == "payment_unexpected_state"
    with pytest.raises(ApiError):
        states.apply("canceled", states.Event.REFUND_REQUESTED)


@pytest.mark.parametrize(("body", "param"), [
    (b'{"amount": "1", "currency": "usd", "payment_method": "tok_abcdefghijkl"}', "amount"),
    (b'{"amount": 1, "currency": "usd", "payment_method": {"card": {"number": "4242424242424242", '
     b'"exp_month": 0, "exp_year": 2030}}}', "payment_method[card][exp_month]"),
    (b'{"amount": 1, "currency": "usd"}', None),
])
def test_validation_errors_name_the_field(body: bytes, param: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        models.payment_create_decoder.decode(body)
    assert models.error_param(error.value) == param


def test_card_input_repr_is_masked() -> None:
    card = models.CardInput(number="4242424242424242", exp_month=1, exp_year=2030, cvc="123")
    assert "4242424242424242" not in repr(card) and "123'" not in repr(card)
    assert "424242******4242" in repr(card)


def test_currency_exponents() -> None:
    assert (lookup("usd").exponent, lookup("jpy").exponent, lookup("bhd").exponent) == (2, 0, 3)
    assert lookup("eur").numeric == "978"
    assert all(len(c.numeric) == 3 and c.numeric.isdigit() for c in CURRENCIES.values())
