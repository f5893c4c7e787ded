"""POST /v1/tokens on the vault's HTTP port: publishable keys, card checks, CORS, Stripe-style errors, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from loadtest.httpclient import Client
from switch.dev.devstack import Stack, free_port
from switch.vault_protocol import VaultError
from tests.vault.conftest import make_pan, run_vault_cli, spawned_vault
from vault.public_api import RateLimiter


def new_publishable_key(stack: Stack, merchant_id: str) -> tuple[str, str]:
    """(key id, publishable key) created through the real CLI."""
    result = run_vault_cli(stack, "publishable-keys", "create", "--merchant", merchant_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    key_id = next(line.split()[-1] for line in lines if line.startswith("key id"))
    publishable_key = next(line.split()[-1] for line in lines if line.startswith("publishable key"))
    assert key_id.startswith("pkid_") and publishable_key.startswith("pk_test_")
    return key_id, publishable_key


@pytest.fixture(scope="module")
def merchant_key(vault_stack: Stack) -> tuple[str, str]:
    return new_publishable_key(vault_stack, "m_public")


@pytest_asyncio.fixture
async def http(vault_stack: Stack) -> AsyncIterator[Client]:
    assert vault_stack.vault_http_url
    client = Client(vault_stack.vault_http_url)
    yield client
    await client.close()


def card_body(number: str, cvc: str | None = "123", **card: object) -> dict[str, object]:
    fields: dict[str, object] = {"number": number, "exp_month": 9, "exp_year": 2034, **card}
    if cvc is not None:
        fields["cvc"] = cvc
    return {"card": fields}


async def test_tokenize_returns_a_token_the_switch_can_use(http, vault_client, merchant_key, vault_db):
    pan = make_pan("424242")
    response = await http.request("POST", "/v1/tokens", card_body(pan, "739"), api_key=merchant_key[1],
                                  headers={"origin": "https://shop.example"})
    assert response.status == 200, response.body
    body = response.json()
    assert body["object"] == "token" and body["id"].startswith("tok_")
    assert body["card"] == {"brand": "visa", "last4": pan[-4:], "exp_month": 9, "exp_year": 2034}
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cache-control"] == "no-store"
    assert pan not in response.body.decode() and "739" not in response.body.decode()
    # The token belongs to the key's merchant: the switch detokenizes it (with the CVC, once) ...
    card = await vault_client.detokenize("m_public", body["id"])
    assert card.number.reveal() == pan and card.cvc is not None and card.cvc.reveal() == "739"
    # ... and no other merchant can.
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_other", body["id"])
    assert caught.value.code == "not_found"
    caller = await vault_db.fetchval(
        "SELECT caller FROM vault.audit WHERE token_id = $1 AND operation = 'tokenize'", body["id"])
    for _ in range(100):
        if caller is not None:
            break
        await asyncio.sleep(0.05)
        caller = await vault_db.fetchval(
            "SELECT caller FROM vault.audit WHERE token_id = $1 AND operation = 'tokenize'", body["id"])
    assert caller == f"public:{merchant_key[0]}"


async def test_cors_preflight(http):
    response = await http.request("OPTIONS", "/v1/tokens", headers={
        "origin": "https://shop.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= {
        part.strip() for part in response.headers["access-control-allow-headers"].split(",")}


@pytest.mark.parametrize("authorization", [None, "Basic abc", "Bearer pk_test_unknown", "Bearer sk_test_secret"])
async def test_bad_keys_are_401(http, authorization):
    headers = {"authorization": authorization} if authorization else {}
    response = await http.request("POST", "/v1/tokens", card_body(make_pan()), headers=headers)
    assert response.status == 401
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert error["request_id"].startswith("req_")
    assert response.headers["access-control-allow-origin"] == "*"


async def test_revoked_key_is_401(vault_stack, http):
    key_id, key = new_publishable_key(vault_stack, "m_public_revoked")
    result = run_vault_cli(vault_stack, "publishable-keys", "revoke", "--key", key_id)
    assert (result.returncode, result.stdout.strip()) == (0, "revoked")
    response = await http.request("POST", "/v1/tokens", card_body(make_pan()), api_key=key)
    assert response.status == 401


@pytest.mark.parametrize(("card", "status", "kind", "code", "param"), [
    (card_body("4242424242424241"), 402, "card_error", "incorrect_number", "card[number]"),
    (card_body(make_pan("999999")), 402, "card_error", "unsupported_brand", "card[number]"),
    (card_body(make_pan(), exp_year=2020), 402, "card_error", "expired_card", "card[exp_month]"),
    (card_body(make_pan(), cvc="12"), 400, "invalid_request_error", "parameter_invalid", "card[cvc]"),
    (card_body(make_pan(), cvc="1234"), 402, "card_error", "invalid_cvc", "card[cvc]"),
    (card_body("4242 4242 4242"), 400, "invalid_request_error", "parameter_invalid", "card[number]"),
    (card_body(make_pan(), exp_month=13), 400, "invalid_request_error", "parameter_invalid", "card[exp_month]"),
    ({**card_body(make_pan()), "extra": 1}, 400, "invalid_request_error", "parameter_invalid", "extra"),
    ({"card": {"number": make_pan(), "exp_month": 1, "exp_year": 2034, "track2": "x"}}, 400,
     "invalid_request_error", "parameter_invalid", "card[track2]"),
    (b"{not json", 400, "invalid_request_error", "invalid_json", None),
    (b"", 400, "invalid_request_error", "missing_body", None),
])
async def test_bad_cards_are_stripe_style_errors_and_write_nothing(http, merchant_key, vault_db, card, status, kind,
                                                                   code, param):
    before = await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = 'm_public'")
    response = await http.request("POST", "/v1/tokens", card, api_key=merchant_key[1])
    assert response.status == status, response.body
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (kind, code, param)
    if isinstance(card, dict):
        assert card["card"]["number"] not in response.body.decode()
    assert await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = 'm_public'") == before


async def test_unknown_path_and_method(http, merchant_key):
    assert (await http.request("GET", "/v1/tokens", api_key=merchant_key[1])).status == 405
    missing = await http.request("POST", "/v1/payments", card_body(make_pan()), api_key=merchant_key[1])
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "resource_missing"


# ----- rate limit ---------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate():
    now = [100.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("other") == 0.0  # buckets are per key


def test_token_bucket_memory_is_bounded():
    limiter = RateLimiter(rate_per_s=1.0, burst=1, buckets_max=100, clock=lambda: 0.0)
    for index in range(1000):
        limiter.take(f"key-{index}")
    assert len(limiter) == 100


@pytest.fixture(scope="module")
def slow_vault(vault_stack: Stack) -> Iterator[str]:
    """A second vault process on the same database and token whose public endpoint allows 3 requests."""
    port = free_port()
    with spawned_vault(vault_stack, "vault-ratelimit", VAULT_HTTP_PORT=str(port), VAULT_HTTP_RATE_PER_S="0.001",
                       VAULT_HTTP_BURST="3"):
        yield f"http://127.0.0.1:{port}"


async def test_rate_limit_per_key_is_429_with_retry_after(vault_stack, slow_vault):
    _, first_key = new_publishable_key(vault_stack, "m_public_limited")
    _, second_key = new_publishable_key(vault_stack, "m_public_limited")
    client = Client(slow_vault)
    try:
        statuses = [(await client.request("POST", "/v1/tokens", card_body(make_pan()), api_key=first_key)).status
                    for _ in range(3)]
        limited = await client.request("POST", "/v1/tokens", card_body(make_pan()), api_key=first_key)
        other = await client.request("POST", "/v1/tokens", card_body(make_pan()), api_key=second_key)
    finally:
        await client.close()
    assert statuses == [200, 200, 200]
    assert limited.status == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["access-control-allow-origin"] == "*"
    assert other.status == 200
