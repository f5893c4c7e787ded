"""The SDK's retry logic (pure: a scripted transport): the same idempotency key on every attempt, retries
only of what is safe to retry, and a 429's Retry-After respected as the least wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from switch_sdk import AsyncClient, CardError, RateLimitError
from switch_sdk.errors import APIConnectionError

PAYMENT = {"id": "pay_0123456789", "status": "succeeded", "amount": 100, "amount_capturable": 0,
           "amount_received": 100, "amount_refunded": 0, "currency": "usd", "capture_method": "automatic",
           "payment_method": {"token": "tok_0123456789", "card": {"brand": "visa", "last4": "4242", "exp_month": 1,
                                                                   "exp_year": 2031}}, "created": 1}


class Scripted:
    def __init__(self, answers: list[Any]) -> None:
        self.answers, self.keys = answers, []

    async def call(self, op: str, target: dict[str, str], body: Any, key: str | None) -> Any:
        self.keys.append(key)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        pass


def client_with(answers: list[Any], monkeypatch: pytest.MonkeyPatch) -> tuple[AsyncClient, Scripted, list[float]]:
    client = AsyncClient("sk_test_x", base_url="http://127.0.0.1:1", max_retries=3, backoff_s=0.01)
    scripted = Scripted(answers)
    client._transport = scripted  # type: ignore[assignment]  # noqa: SLF001
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    return client, scripted, waits


async def test_retryable_failures_are_retried_with_the_same_key_and_retry_after_is_respected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, scripted, waits = client_with([
        APIConnectionError("broken"), (409, {"type": "idempotency_error", "code": "idempotency_key_in_use"}, False, 0),
        (429, {"type": "invalid_request_error", "code": "rate_limit"}, False, 2.0), (200, PAYMENT, True, 0)],
        monkeypatch)
    payment = await client.create_payment(100, "usd", "tok_0123456789")
    assert payment.id == "pay_0123456789"
    assert len(set(scripted.keys)) == 1 and scripted.keys[0] and scripted.keys[0].startswith("sdk-")
    assert len(waits) == 3 and waits[2] >= 2.0 and max(waits[:2]) < 1.0


async def test_a_card_error_is_not_retried_and_retries_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    client, scripted, _ = client_with([(402, {"type": "card_error", "code": "card_declined",
                                              "decline_code": "do_not_honor", "message": "declined"}, False, 0)],
                                      monkeypatch)
    with pytest.raises(CardError) as declined:
        await client.create_payment(100, "usd", "tok_0123456789", idempotency_key="mine")
    assert declined.value.decline_code == "do_not_honor" and scripted.keys == ["mine"]
    client, scripted, _ = client_with([(429, {"type": "invalid_request_error", "code": "rate_limit"}, False, 0)] * 4,
                                      monkeypatch)
    with pytest.raises(RateLimitError):
        await client.get_payment("pay_0123456789")
    assert scripted.keys == [None] * 4                      # reads carry no key, and were tried 1 + 3 times
