"""CardNumber, brand detection, Luhn, expiry and SecretStr: pure, no I/O."""

from __future__ import annotations

import datetime
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.common.cards import (
    CardData,
    CardError,
    CardNumber,
    SecretStr,
    detect_brand,
    luhn_valid,
    validate_cvc,
    validate_expiry,
)


def with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("unreachable")


@pytest.mark.parametrize("digits", ["4242424242424242", "4111111111111111", "5555555555554444",
                                    "378282246310005", "6011111111111117", "30569309025904",
                                    "3530111333300000", "6200000000000005"])
def test_known_test_numbers_pass_luhn(digits):
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", ["4242424242424241", "", "abc", "4242 4242", "٤٢٤٢"])
def test_luhn_rejects(digits):
    assert not luhn_valid(digits)


@pytest.mark.parametrize(("prefix", "length", "brand"), [
    ("4", 13, "visa"), ("4", 16, "visa"), ("4", 19, "visa"), ("4", 15, None),
    ("51", 16, "mastercard"), ("55", 16, "mastercard"), ("2221", 16, "mastercard"),
    ("2720", 16, "mastercard"), ("2721", 16, None), ("2220", 16, None), ("51", 19, None),
    ("34", 15, "amex"), ("37", 15, "amex"), ("37", 16, None),
    ("6011", 16, "discover"), ("644", 19, "discover"), ("649", 16, "discover"), ("65", 16, "discover"),
    ("622126", 16, "discover"), ("622925", 19, "discover"), ("6011", 15, None),
    ("3528", 16, "jcb"), ("3589", 19, "jcb"), ("3527", 16, None),
    ("300", 14, "diners"), ("305", 16, "diners"), ("36", 14, "diners"), ("38", 19, "diners"),
    ("39", 14, "diners"), ("306", 14, None),
    ("62", 16, "unionpay"), ("622125", 16, "unionpay"), ("622926", 19, "unionpay"), ("62", 12, None),
    ("50", 12, "maestro"), ("56", 19, "maestro"), ("58", 16, "maestro"), ("63", 16, "maestro"),
    ("67", 12, "maestro"), ("60", 13, "maestro"),
    ("1", 16, None), ("7", 16, None), ("9", 16, None), ("59", 16, None),
])
def test_detect_brand_by_range_and_length(prefix, length, brand):
    digits = prefix + "0" * (length - len(prefix))
    assert detect_brand(digits) == brand


def test_card_number_properties_and_masking():
    number = CardNumber("4242424242424242")
    assert number.reveal() == "4242424242424242"
    assert (number.bin, number.last4, number.brand) == ("424242", "4242", "visa")
    assert str(number) == "424242******4242"
    assert repr(number) == "CardNumber('424242******4242')"
    assert f"{number}" == "424242******4242"
    assert f"{number:>20}" == "    424242******4242"
    assert "%s" % number == "424242******4242"  # noqa: UP031


def test_short_pan_hides_at_least_six_digits():
    number = CardNumber(with_check_digit("50000000001"))
    assert len(number.reveal()) == 12
    assert str(number).count("*") >= 6
    assert str(number).endswith(number.last4)


@pytest.mark.parametrize(("value", "code"), [
    ("4242-4242-4242-4242", "invalid_number"), ("", "invalid_number"), ("42424242424", "invalid_number"),
    ("4" * 20, "invalid_number"), ("４２４２４２４２４２４２４２４２", "invalid_number"),
    ("4242424242424241", "incorrect_number"),
])
def test_construction_errors_have_codes_and_no_digits(value, code):
    with pytest.raises(CardError) as caught:
        CardNumber(value)
    assert caught.value.code == code
    if value:
        assert value not in str(caught.value) and value not in repr(caught.value)
    assert not any(char.isdigit() for char in caught.value.message.replace("12", "").replace("19", ""))


def test_non_string_is_invalid_number():
    with pytest.raises(CardError) as caught:
        CardNumber(4242424242424242)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_number"


def test_unsupported_brand():
    number = CardNumber(with_check_digit("999999000000000"))
    assert number.brand is None
    with pytest.raises(CardError) as caught:
        number.require_brand()
    assert caught.value.code == "unsupported_brand"


def test_equality_hash_and_no_pickle():
    assert CardNumber("4242424242424242") == CardNumber("4242424242424242")
    assert len({CardNumber("4242424242424242"), CardNumber("4242424242424242")}) == 1
    with pytest.raises(TypeError):
        pickle.dumps(CardNumber("4242424242424242"))
    with pytest.raises(TypeError):
        pickle.dumps(SecretStr("123"))
    assert not hasattr(CardNumber("4242424242424242"), "__dict__")


def test_secret_str_is_masked():
    secret = SecretStr("737")
    assert repr(secret) == "SecretStr('***')"
    assert str(secret) == "***" and f"{secret}" == "***"
    assert secret.reveal() == "737"
    assert secret == SecretStr("737") and secret != SecretStr("738")


def test_card_data_repr_is_masked():
    card = CardData(CardNumber("4242424242424242"), 12, 2030, "visa", "4242", SecretStr("737"))
    text = repr(card)
    assert "4242424242424242" not in text and "737" not in text
    assert "424242******4242" in text


TODAY = datetime.date(2026, 6, 15)


@pytest.mark.parametrize(("month", "year", "code"), [
    (0, 2030, "invalid_expiry_month"), (13, 2030, "invalid_expiry_month"),
    (True, 2030, "invalid_expiry_month"),
    (1, 26, "invalid_expiry_year"), (1, 1999, "invalid_expiry_year"), (1, 2077, "invalid_expiry_year"),
    (5, 2026, "expired_card"), (12, 2025, "expired_card"),
])
def test_expiry_errors(month, year, code):
    with pytest.raises(CardError) as caught:
        validate_expiry(month, year, today=TODAY)
    assert caught.value.code == code


@pytest.mark.parametrize(("month", "year"), [(6, 2026), (7, 2026), (1, 2076)])
def test_expiry_valid_through_its_month(month, year):
    validate_expiry(month, year, today=TODAY)


@pytest.mark.parametrize(("cvc", "brand", "ok"), [
    ("123", "visa", True), ("1234", "amex", True), ("123", "amex", False), ("1234", "visa", False),
    ("12a", "visa", False), ("", "visa", False),
])
def test_cvc(cvc, brand, ok):
    if ok:
        validate_cvc(SecretStr(cvc), brand)
    else:
        with pytest.raises(CardError) as caught:
            validate_cvc(SecretStr(cvc), brand)
        assert caught.value.code == "invalid_cvc"


pan_bodies = st.integers(min_value=11, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))


@given(pan_bodies)
def test_no_rendering_of_a_card_number_contains_the_pan(body):
    digits = with_check_digit(body)
    number = CardNumber(digits)
    renderings = [str(number), repr(number), f"{number}", f"{number!r}", f"{number:<40}",
                  "%s %r" % (number, number),  # noqa: UP031
                  repr([number]), repr({"n": number}), repr(CardData(number, 1, 2030, "x", number.last4))]
    for text in renderings:
        assert digits not in text
    assert number.reveal() == digits


@given(pan_bodies)
def test_no_error_about_a_card_number_contains_the_pan(body):
    digits = with_check_digit(body)
    wrong = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    for candidate in (wrong, digits + "x", " " + digits, digits + "9" * 8):
        try:
            CardNumber(candidate)
        except CardError as exc:
            assert digits not in str(exc) and digits not in repr(exc) and digits not in exc.message
        else:
            raise AssertionError("should have failed")
