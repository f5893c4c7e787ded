"""Stripe's form bodies: bracket notation, arrays, bounds and refusals; parameters decoded with Stripe's
error codes; test payment methods."""

from __future__ import annotations

import pytest

from switch.common import errors
from switch.common.errors import ApiError
from switch.frontends.stripe import form, params
from switch.payments.commands import CardMethod


def test_brackets_nest_and_indexes_make_lists() -> None:
    parsed = form.parse(b"amount=100&metadata[order]=7&expand[0]=latest_charge&expand[1]=payment_method"
                        b"&payment_method_data[card][number]=4242424242424242&a[]=1&a[]=2&items[1][p]=q&items[0][p]=r")
    assert parsed == {"amount": "100", "metadata": {"order": "7"}, "expand": ["latest_charge", "payment_method"],
                      "payment_method_data": {"card": {"number": "4242424242424242"}}, "a": ["1", "2"],
                      "items": [{"p": "r"}, {"p": "q"}]}


def test_metadata_keeps_numeric_keys_and_gaps_stay_a_hash() -> None:
    assert form.parse("metadata[0]=a&metadata[1]=b") == {"metadata": {"0": "a", "1": "b"}}
    assert form.parse("x[0]=a&x[2]=b") == {"x": {"0": "a", "2": "b"}}
    assert form.parse("x[00]=a") == {"x": {"00": "a"}}
    assert form.parse("") == {} and form.parse("a=") == {"a": ""}


@pytest.mark.parametrize("body,code", [
    ("a=1&a=2", "parameter_repeated"),
    ("a[b]=1&a[b]=2", "parameter_repeated"),
    ("a=1&a[b]=2", "parameter_invalid"),
    ("a[b]=2&a=1", "parameter_invalid"),
    ("a[]=1&a[x]=2", "parameter_invalid"),
    ("a[][b]=1", "parameter_invalid"),
    ("a[b=1", "parameter_invalid"),
    ("a b=1", "parameter_invalid"),
    ("[a]=1", "parameter_invalid"),
    ("a[b][c][d][e][f]=1", "parameter_invalid"),
    ("&".join(f"k{i}=1" for i in range(form.FIELDS_MAX + 1)), "parameters_exceeded"),
])
def test_ambiguous_or_unbounded_bodies_are_refused(body: str, code: str) -> None:
    with pytest.raises(ApiError) as raised:
        form.parse(body)
    assert (raised.value.status, raised.value.code) == (400, code)


def test_depth_up_to_the_bound_is_fine_and_errors_never_quote_values() -> None:
    assert form.parse("a[b][c][d][e]=1") == {"a": {"b": {"c": {"d": {"e": "1"}}}}}
    with pytest.raises(ApiError) as raised:
        form.parse("x=4242424242424242&x=4242424242424242")
    assert "4242" not in raised.value.message
    with pytest.raises(ApiError):
        form.parse(b"a=\xff")


@pytest.mark.parametrize("body,code,param", [
    ("currency=usd", "parameter_missing", "amount"),
    ("amount=ten&currency=usd", "parameter_invalid_integer", "amount"),
    ("amount=10&currency=usd&confirm=maybe", "parameter_invalid_boolean", "confirm"),
    ("amount=10&currency=usd&colour=red", "parameter_unknown", "colour"),
    ("amount=10&currency=usd&payment_method_data[card][cvv]=1&payment_method_data[type]=card", "parameter_unknown",
     "payment_method_data[card][cvv]"),
    ("amount=0&currency=usd", "parameter_invalid", "amount"),
    ("amount=10&currency=dollars", "parameter_invalid", "currency"),
])
def test_parameters_fail_with_stripes_codes_and_bracket_names(body: str, code: str, param: str) -> None:
    with pytest.raises(ApiError) as raised:
        params.decode(body.encode(), "application/x-www-form-urlencoded", params.CreateIntent)
    assert (raised.value.code, raised.value.param) == (code, param)


def test_form_and_json_give_the_same_intent() -> None:
    from_form = params.decode(b"amount=10&currency=USD&confirm=true&payment_method=pm_card_visa&metadata[a]=b",
                              "application/x-www-form-urlencoded", params.CreateIntent)
    from_json = params.decode(b'{"amount": 10, "currency": "USD", "confirm": true, "payment_method": "pm_card_visa",'
                              b' "metadata": {"a": "b"}}', "application/json", params.CreateIntent)
    assert from_form == from_json
    command = params.authorize(from_form, from_form)
    assert (command.amount, command.currency, command.metadata) == (10, "usd", {"a": "b"})
    assert isinstance(command.payment_method, CardMethod)
    assert command.payment_method.card.number == "4242424242424242"


def test_payment_methods_name_test_cards_saved_tokens_or_card_data() -> None:
    declined = params.payment_method_of("pm_card_chargeDeclinedInsufficientFunds", None)
    assert isinstance(declined, CardMethod) and declined.card.number == "4000000000009995"
    assert params.payment_method_of("pm_0123456789abcdef", None) == "tok_0123456789abcdef"
    with pytest.raises(ApiError) as missing:
        params.payment_method_of("pm_card_nosuchcard", None)
    assert (missing.value.status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(ApiError) as bad_card:
        params.payment_method_of(None, params.PaymentMethodData("card", params.CardData(
            number="4242x", exp_month=1, exp_year=2030)))
    assert bad_card.value.param == "payment_method_data[card][number]"
    with pytest.raises(ApiError) as none:
        params.payment_method_of(None, None)
    assert none.value.code == "parameter_missing"


def test_list_queries_take_created_bounds_and_intent_cursors() -> None:
    listing = params.list_query(form.parse("limit=3&starting_after=pi_0123456789&created[gt]=100&created[lte]=200"))
    assert (listing.limit, listing.starting_after) == (3, "pay_0123456789")
    assert listing.created_gte is not None and int(listing.created_gte.timestamp()) == 101
    assert listing.created_lte is not None and int(listing.created_lte.timestamp()) == 200
    with pytest.raises(ApiError):
        params.list_query(form.parse("limit=500"))


PAN = "4242424242424242"


@pytest.mark.parametrize("body", [
    f'{{"payment_method_data": {{"card": {{"number": "{PAN}", "cvc": "987"}}}}}}',     # JSON sent as a form
    f"payment_method_data%5Bcard%5D%5Bnumber%5D%3D{PAN}%26cvc%3D987",                   # key and value encoded
    f"amount=1&currency=usd&payment_method_data[type]={PAN}",                          # an enum value
])
def test_an_error_never_quotes_a_card_number_or_cvc(body: str) -> None:
    with pytest.raises(ApiError) as refused:
        params.decode(body.encode(), "application/x-www-form-urlencoded", params.CreateIntent)
    quoted = f"{refused.value.message} {refused.value.param}"
    assert PAN not in quoted and "987" not in quoted, quoted


def test_an_unknown_payment_method_that_is_a_card_number_is_masked() -> None:
    with pytest.raises(ApiError) as refused:
        params.payment_method_of(PAN, None)
    assert refused.value.status == 404 and PAN not in refused.value.message, refused.value.message


def test_a_token_with_card_data_beside_it_is_refused() -> None:
    data = params.PaymentMethodData("card", params.CardData(number=PAN, cvc="987", token="tok_visa"))
    with pytest.raises(ApiError) as refused:
        params.payment_method_of(None, data)
    assert (refused.value.status, refused.value.code) == (400, "parameter_invalid")
    assert refused.value.param == "payment_method_data[card]"


@pytest.mark.parametrize(("body", "content_type", "param"), [
    (b"amount=10.00&currency=usd", "application/x-www-form-urlencoded", "amount"),
    (b"amount=1e3&currency=usd", "application/x-www-form-urlencoded", "amount"),
    (b'{"amount": 10.0, "currency": "usd"}', "application/json", "amount"),
    (b"amount=100&currency=usd&payment_method_data[type]=card&payment_method_data[card][exp_year]=2.03e3",
     "application/x-www-form-urlencoded", "payment_method_data[card][exp_year]"),
])
def test_an_integer_sent_as_a_decimal_or_exponent_is_refused(body: bytes, content_type: str, param: str) -> None:
    with pytest.raises(ApiError) as refused:
        params.decode(body, content_type, params.CreateIntent)
    assert (refused.value.code, refused.value.param) == ("parameter_invalid_integer", param)
    assert params.decode(b"amount=1000&currency=usd", "", params.CreateIntent).amount == 1000


@pytest.mark.parametrize(("body", "code"), [
    (b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
    (b'{"amount": 100, "currency": "usd", "amount": 100000}', "duplicate_key"),
])
def test_a_json_body_nested_too_deep_or_repeating_a_key_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        params.decode(body, "application/json", params.CreateIntent)
    assert (refused.value.status, refused.value.code) == (400, code)


def test_an_empty_json_body_is_an_empty_object() -> None:
    assert params.decode(b"", "application/json", params.CancelIntent) == params.CancelIntent()


@pytest.mark.parametrize(("message", "shown"), [
    ("No such PaymentMethod: '4242424242424242'", "No such PaymentMethod: '[card number]'"),
    ("Expected `int` <= 999999999999.", "Expected `int` <= 999999999999."),          # a limit, not a card
    ("No such event: 'evt_1234567890123456'", "No such event: 'evt_1234567890123456'"),
])
def test_only_what_reads_as_a_card_number_is_masked(message: str, shown: str) -> None:
    refused = errors.invalid_request("parameter_invalid", message, message)
    assert (refused.message, refused.param) == (shown, shown)
