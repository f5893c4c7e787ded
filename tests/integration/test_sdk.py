"""The merchant SDK (sdk/, switch_sdk) against the real stack over both transports: the lifecycle per brand,
declines as CardError, a payment retried after a dropped connection made once, 409 retried to the first
answer, timeouts, and the webhook verifier against the switch's own signatures."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import switch_sdk
from switch_sdk import AsyncClient, CardError, Client
from switch_sdk.webhooks import WebhookVerificationError, verify

from switch.dev.devstack import Stack
from switch.frontends.webhooks import signing
from tests.conftest import simulator
from tests.integration.helpers import card, luhn_card

pytestmark = pytest.mark.integration

TRANSPORTS = ("http", "tcp")


def _options(stack: Stack, transport: str) -> dict[str, object]:
    if transport == "http":
        return {"base_url": stack.switch_url, "transport": "http"}
    return {"tcp_address": f"127.0.0.1:{stack.switch_tcp_port}", "transport": "tcp"}


@pytest_asyncio.fixture(loop_scope="session", params=TRANSPORTS)
async def sdk(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[AsyncClient]:
    api_key = stack.seed_merchant(f"sdk-{secrets.token_hex(3)}", fraud_rules="lists")
    client = AsyncClient(api_key, timeout_s=10, **_options(stack, request.param))  # type: ignore[arg-type]
    yield client
    await client.close()


@pytest.mark.parametrize("number,brand", [("4571", "visa"), ("5200", "mastercard"), ("3714", "amex")])
async def test_authorize_capture_refund_and_read_per_brand(sdk: AsyncClient, number: str, brand: str) -> None:
    length = 15 if number.startswith("37") else 16
    payment = await sdk.create_payment(3000, "usd", card(luhn_card(number, length), cvc="1234" if length == 15
                                                         else "123"), capture_method="manual")
    assert isinstance(payment, switch_sdk.Payment)
    assert (payment.status, payment.payment_method.card.brand) == ("requires_capture", brand)
    captured = await sdk.capture(payment.id, 2500)
    assert (captured.status, captured.amount_received) == ("succeeded", 2500)
    refund = await sdk.refund(payment.id, 1000)
    assert (refund.status, refund.amount) == ("succeeded", 1000)
    assert (await sdk.get_payment(payment.id)).amount_refunded == 1000
    assert (await sdk.get_refund(refund.id)).payment == payment.id


async def test_a_decline_is_a_card_error(sdk: AsyncClient) -> None:
    with pytest.raises(CardError) as raised:
        await sdk.create_payment(800, "usd", card("4000000000009995"))
    error = raised.value
    assert (error.http_status, error.code, error.decline_code) == (402, "card_declined", "insufficient_funds")
    assert error.payment_id and error.request_id and "4000000000009995" not in repr(error)
    with pytest.raises(switch_sdk.InvalidRequestError) as invalid:
        await sdk.create_payment(0, "usd", card())
    assert invalid.value.param == "amount"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_retry_after_a_timeout_makes_one_payment(stack: Stack, transport: str) -> None:
    """The first attempt times out on the client (the network answers slowly); the retries carry the same
    key: 409 while the first is in flight, then its answer. One payment."""
    api_key = stack.seed_merchant(f"sdk-retry-{secrets.token_hex(3)}", fraud_rules="lists")
    client = AsyncClient(api_key, timeout_s=0.15, max_retries=8, backoff_s=0.1, **_options(stack, transport))  # type: ignore[arg-type]
    seen = _record_statuses(client)
    simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 400})
    try:
        payment = await client.create_payment(4321, "usd", card(luhn_card("4571")), idempotency_key="once-" +
                                              secrets.token_hex(6))
    finally:
        simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 0})
        await client.close()
    assert payment.status == "succeeded"
    assert seen[0] == "timeout" and 409 in seen and seen[-1] == 200, seen   # timed out, in flight, answered
    reader = AsyncClient(api_key, **_options(stack, "http"))  # type: ignore[arg-type]
    try:
        assert (await reader.get_payment(payment.id)).amount == 4321
    finally:
        await reader.close()
    rows = await _payments_of(stack, api_key)
    assert rows == 1, f"{rows} payments made"


def _record_statuses(client: AsyncClient) -> list[object]:
    """Each attempt's HTTP status (or "timeout"), as the SDK saw it."""
    seen: list[object] = []
    call = client._transport.call                       # noqa: SLF001 - the test watches the wire

    async def watched(*args: object) -> object:
        try:
            answer = await call(*args)  # type: ignore[arg-type]
        except switch_sdk.APIConnectionError:
            seen.append("timeout")
            raise
        seen.append(answer[0])
        return answer

    client._transport.call = watched  # type: ignore[method-assign]  # noqa: SLF001
    return seen


async def _payments_of(stack: Stack, api_key: str) -> int:
    """How many payments the merchant has (waiting out its own rate limit, which the count shares)."""
    import httpx
    async with httpx.AsyncClient(base_url=stack.switch_url, headers={"authorization": f"Bearer {api_key}"}) as http:
        for _ in range(10):
            listed = await http.get("/v1/payments?limit=100")
            if listed.status_code != 429:
                break
            await asyncio.sleep(1.0)
        return len(listed.json()["data"])


async def test_the_sync_client_over_tcp_multiplexes_threads(stack: Stack) -> None:
    api_key = stack.seed_merchant(f"sdk-sync-{secrets.token_hex(3)}", fraud_rules="lists")

    def pay_many() -> list[str]:
        with Client(api_key, **_options(stack, "tcp")) as client:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(8) as pool:
                made = list(pool.map(lambda i: client.create_payment(100 + i, "usd", card(luhn_card("4571"))),
                                     range(40)))
            return [payment.id for payment in made]

    ids = await asyncio.to_thread(pay_many)
    assert len(set(ids)) == 40


async def test_a_connection_that_cannot_be_made_is_an_api_connection_error(stack: Stack) -> None:
    client = AsyncClient("sk_test_x", tcp_address="127.0.0.1:9", transport="tcp", max_retries=1, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(switch_sdk.APIConnectionError):
        await client.get_payment("pay_0123456789abcdef")
    assert time.monotonic() - started < 5
    wrong = AsyncClient("sk_test_wrong", **_options(stack, "tcp"))  # type: ignore[arg-type]
    with pytest.raises(switch_sdk.AuthenticationError):
        await wrong.get_payment("pay_0123456789abcdef")
    await wrong.close()


def test_the_webhook_verifier_accepts_the_switchs_signature_and_nothing_else() -> None:
    secret, body = signing.new_secret(), b'{"id":"evt_0000000000000001","type":"payment.succeeded","created":1,' \
                                         b'"data":{"object":{}}}'
    now = int(time.time())
    headers = dict(signing.headers(secret, "evt_0000000000000001", now, body))
    assert verify(secret, headers, body).type == "payment.succeeded"
    with pytest.raises(WebhookVerificationError):
        verify(signing.new_secret(), headers, body)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body + b" ")
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body, now=now + 3600)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_payment_whose_connection_drops_is_retried_and_made_once(stack: Stack, transport: str) -> None:
    """The connection breaks while the payment is in flight (the switch goes on with it); the SDK reconnects
    and retries with the same key, and gets the first payment's answer."""
    api_key = stack.seed_merchant(f"sdk-drop-{secrets.token_hex(3)}", fraud_rules="lists")
    client = AsyncClient(api_key, timeout_s=10, max_retries=6, backoff_s=0.2, **_options(stack, transport))  # type: ignore[arg-type]
    simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 300})
    try:
        paying = asyncio.ensure_future(client.create_payment(2222, "usd", card(luhn_card("4571"))))
        await asyncio.sleep(0.1)                                    # the request is in the switch now
        await _drop_connections(client)
        payment = await paying
    finally:
        simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 0})
        await client.close()
    assert payment.status == "succeeded"
    assert await _payments_of(stack, api_key) == 1


async def _drop_connections(client: AsyncClient) -> None:
    """Break the client's connections under it, as a network fault would."""
    transport = client._transport                      # noqa: SLF001 - the test's fault injection
    if hasattr(transport, "writer") and transport.writer is not None:
        transport.writer.transport.abort()
        return
    pool = transport.client._transport._pool          # type: ignore[union-attr]  # noqa: SLF001
    for connection in list(pool.connections):
        await connection.aclose()


async def test_429_is_retried_until_the_rate_allows(stack: Stack) -> None:
    """A merchant over its rate limit (2 a second, burst 4): the SDK backs off and retries each request
    until it goes; none fails, none is made twice."""
    made = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "switch", "merchants", "create", "--name", "sdk-slow", "--quiet",
                         "--per-s", "2", "--fraud-rules", "lists"], env={**os.environ, **stack.switch_env()},
        check=True, capture_output=True, text=True)
    api_key = made.stdout.strip().splitlines()[-1]
    client = AsyncClient(api_key, max_retries=10, backoff_s=0.3, **_options(stack, "http"))  # type: ignore[arg-type]
    try:
        paid = await asyncio.gather(*(client.create_payment(100 + i, "usd", card(luhn_card("4571")))
                                      for i in range(8)))
    finally:
        await client.close()
    assert len({payment.id for payment in paid}) == 8
    assert await _payments_of(stack, api_key) == 8
