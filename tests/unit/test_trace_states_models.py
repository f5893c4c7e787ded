"""Pure logic: trace numbers, the state table, validation error paths, currencies."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.common.currency import CURRENCIES, lookup
from switch.common.validation import error_param
from switch.frontends.http import schema
from switch.payments import states
from switch.payments.commands import Card
from switch.payments.trace import trace_for


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
    assert states.apply("succeeded", states.Event.CAPTURED) is None
    assert states.apply("canceled", states.Event.REFUND_REQUESTED) is None
    assert "succeeded" in states.not_allowed_message("succeeded", states.Event.CAPTURED)


def test_refund_table_moves_from_pending_on_network_answers_and_settles_a_success() -> None:
    settlement = {states.RefundEvent.SETTLED, states.RefundEvent.SETTLEMENT_SUPERSEDED}
    assert states.apply_refund("pending", states.RefundEvent.APPROVED) == states.RefundStatus.SUCCEEDED
    for event in set(states.RefundEvent) - settlement:
        if event is not states.RefundEvent.APPROVED:
            assert states.apply_refund("pending", event) == states.RefundStatus.FAILED
    with pytest.raises(AssertionError):
        states.apply_refund("succeeded", states.RefundEvent.DECLINED)
    assert states.apply_refund("succeeded", states.RefundEvent.SETTLED) == states.RefundStatus.SETTLED
    assert states.apply_refund("settled", states.RefundEvent.SETTLEMENT_SUPERSEDED) == states.RefundStatus.SUCCEEDED
    with pytest.raises(AssertionError):
        states.apply_refund("failed", states.RefundEvent.SETTLED)


def test_a_settled_payment_can_still_be_refunded() -> None:
    assert states.apply("succeeded", states.Event.SETTLED) == states.Status.SETTLED
    assert states.apply("settled", states.Event.REFUND_REQUESTED) == states.Status.SETTLED
    assert states.apply("requires_capture", states.Event.SETTLED) is None


@pytest.mark.parametrize(("body", "param"), [
    (b'{"amount": "1", "currency": "usd", "payment_method": "tok_abcdefghijkl"}', "amount"),
    (b'{"amount": 1, "currency": "usd", "payment_method": {"card": {"number": "4242424242424242", '
     b'"exp_month": 0, "exp_year": 2030}}}', "payment_method[card][exp_month]"),
    (b'{"amount": 1, "currency": "usd"}', "payment_method"),
])
def test_validation_errors_name_the_field(body: bytes, param: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        schema.authorize_decoder.decode(body)
    assert error_param(error.value) == param


def test_card_input_repr_is_masked() -> None:
    card = Card(number="4242424242424242", exp_month=1, exp_year=2030, cvc="123")
    assert "4242424242424242" not in repr(card) and "123'" not in repr(card)
    assert "424242******4242" in repr(card)


def test_currency_exponents() -> None:
    assert (lookup("usd").exponent, lookup("jpy").exponent, lookup("bhd").exponent) == (2, 0, 3)
    assert lookup("eur").numeric == "978"
    assert all(len(c.numeric) == 3 and c.numeric.isdigit() for c in CURRENCIES.values())
