"""A value whose pattern forbids a newline is refused with one at its end too: Python's `$` alone matches
just before a final newline (switch.common.validation)."""

from __future__ import annotations

import json

import pytest

from switch.common.errors import ApiError
from switch.frontends.http import schema
from switch.frontends.stripe import params


def _authorize(**fields: object) -> bytes:
    body = {"amount": 1000, "currency": "usd", "payment_method": "tok_0123456789abcdef", **fields}
    return json.dumps(body).encode()


@pytest.mark.parametrize(("fields", "param"), [
    ({"statement_descriptor": "SHOP\n"}, "statement_descriptor"),
    ({"customer_details": {"email": "fraud@example.com\n"}}, "customer_details[email]"),
    ({"currency": "usd\n"}, "currency"),
    ({"payment_method": "tok_0123456789abcdef\n"}, "payment_method"),
])
def test_the_native_api_refuses_a_trailing_newline(fields: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as refused:
        schema.decode(schema.authorize_decoder, _authorize(**fields))
    assert (refused.value.code, refused.value.param) == ("parameter_invalid", param)
    assert schema.decode(schema.authorize_decoder, _authorize(statement_descriptor="SHOP")).amount == 1000


def test_the_stripe_api_refuses_a_trailing_newline() -> None:
    with pytest.raises(ApiError) as refused:
        params.decode(b"amount=100&currency=usd%0A", "application/x-www-form-urlencoded", params.CreateIntent)
    assert refused.value.param == "currency"
