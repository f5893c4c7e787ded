"""Bad input gets a specific 4xx with a Stripe-style error, and writes nothing."""

from __future__ import annotations

import pytest

from loadtest.httpclient import Client
from tests.integration.helpers import card, key, payment

pytestmark = pytest.mark.integration


async def _rows(db) -> tuple[int, int]:
    payments = await db.fetchval("SELECT count(*) FROM payments")
    return payments, await db.fetchval("SELECT count(*) FROM idempotency_keys")


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b"{not json", 400, "invalid_json", None),
    (b"", 400, "missing_body", None),
    ({"amount": 100, "currency": "usd", "payment_method": "tok_abcdefghijkl", "surprise": 1}, 400,
     "parameter_invalid", "surprise"),
    ({"currency": "usd", "payment_method": "tok_abcdefghijkl"}, 400, "parameter_invalid", "amount"),
    ({"amount": "100", "currency": "usd", "payment_method": "tok_abcdefghijkl"}, 400, "parameter_invalid", "amount"),
    ({"amount": 0, "currency": "usd", "payment_method": "tok_abcdefghijkl"}, 400, "parameter_invalid", "amount"),
    ({"amount": 100, "currency": "USD", "payment_method": "tok_abcdefghijkl"}, 400, "parameter_invalid", "currency"),
    ({"amount": 100, "currency": "xxx", "payment_method": card()}, 400, "currency_invalid", "currency"),
    ({"amount": 100, "currency": "usd", "payment_method": card("4242424242424241")}, 402, "incorrect_number",
     "payment_method[card][number]"),
    ({"amount": 100, "currency": "usd", "payment_method": {"card": {"number": "4242424242424242", "exp_month": 13,
                                                                     "exp_year": 2030}}},
     400, "parameter_invalid", "payment_method[card][exp_month]"),
])
async def test_invalid_payment_requests(api: Client, db, body, status: int, code: str, param: str | None) -> None:
    before = await _rows(db)
    response = await api.request("POST", "/v1/payments", body, idempotency_key=key())
    assert response.status == status, response.body
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert "4242424242424241" not in response.body.decode()
    assert await _rows(db) == before


async def test_missing_idempotency_key(api: Client) -> None:
    response = await api.request("POST", "/v1/payments", payment())
    assert response.status == 400
    assert response.json()["error"]["code"] == "idempotency_key_missing"


@pytest.mark.parametrize("authorization", [None, "Bearer sk_test_wrong", "Basic abc"])
async def test_bad_or_missing_api_key(stack, authorization: str | None) -> None:
    client = Client(stack.switch_url)
    headers = {"authorization": authorization} if authorization else {}
    try:
        response = await client.request("POST", "/v1/payments", payment(), idempotency_key=key(), headers=headers)
    finally:
        await client.close()
    assert response.status == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_oversized_body_is_413(api: Client) -> None:
    response = await api.request("POST", "/v1/payments", b"{" + b" " * (70 * 1024) + b"}", idempotency_key=key())
    assert response.status == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_unknown_route_is_404(api: Client) -> None:
    response = await api.request("GET", "/v1/nothing")
    assert response.status == 404


@pytest.mark.parametrize(("exp_year", "exp_month", "code"), [(2090, 12, "invalid_expiry_year"),
                                                              (2020, 1, "expired_card")])
async def test_bad_expiry_is_a_card_error_naming_the_field(api: Client, db, exp_year: int, exp_month: int,
                                                            code: str) -> None:
    before = await _rows(db)
    body = {"amount": 100, "currency": "usd", "payment_method": {"card": {
        "number": "4242424242424242", "exp_month": exp_month, "exp_year": exp_year}}}
    response = await api.request("POST", "/v1/payments", body, idempotency_key=key())
    assert response.status == 402, response.body
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("card_error", code, "payment_method[card][exp_year]")
    assert await _rows(db) == before


async def test_a_repeated_key_in_the_body_is_refused(api) -> None:
    body = (b'{"amount": 100, "currency": "usd", "capture_method": "manual", "amount": 100000, '
            b'"payment_method": "tok_aaaaaaaaaaaaaaaaaaaaaa"}')
    response = await api.request("POST", "/v1/payments", body, idempotency_key=key("dup-key"))
    assert response.status == 400
    assert response.json()["error"]["code"] == "duplicate_key"


async def test_a_unicode_digit_in_a_query_number_is_a_400(api) -> None:
    # "²".isdigit() is true in Python, and int("²") raises: found by the fuzz test as a 500.
    for query in ("limit=%C2%B2", "created[gte]=%C2%B2", "limit=%D9%A3"):
        response = await api.request("GET", f"/v1/payments?{query}")
        assert response.status == 400, query
        assert response.json()["error"]["code"] == "parameter_invalid"
