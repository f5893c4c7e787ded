"""Request bodies and small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loadtest.httpclient import Client

VISA_OK = "4242424242424242"
MASTERCARD_OK = "5555555555554444"
VISA_DECLINE = "4000000000000002"
VISA_INSUFFICIENT = "4000000000009995"


def card(number: str = VISA_OK, exp_year: int = 2031, cvc: str | None = "123") -> dict[str, Any]:
    data: dict[str, Any] = {"number": number, "exp_month": 11, "exp_year": exp_year}
    if cvc:
        data["cvc"] = cvc
    return {"card": data}


def payment(amount: int = 1000, number: str = VISA_OK, capture_method: str = "manual", **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "capture_method": capture_method, "payment_method": card(number),
            **extra}


def key(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


_TEST_CARD_LAST4 = {"4242", "4444", "0005", "1117", "0505", "1667", "0002", "9995", "9987", "9979", "0069", "0127",
                    "0119", "0019", "4954", "9235"}       # the last three: Radar's test cards (test_fraud)


_ISSUED_LAST4: set[str] = set()


async def clear_of_a_minute_edge(needed_s: float = 15.0) -> None:
    """Wait, if need be, until the next `needed_s` seconds stay inside one wall-clock minute. The velocity
    counters' minute is a sliding estimate (switch.fraud.velocity): attempts just before a minute's edge
    count at a weight below 1 just after it, so a test that counts to a 1-minute threshold must not
    straddle an edge."""
    assert 0 < needed_s < 59, needed_s
    into = time.time() % 60
    if into + needed_s >= 59.5:
        await asyncio.sleep(60.5 - into)


def luhn_card(prefix: str, length: int = 16) -> str:
    """A random Luhn-valid card number: the simulator approves any such number in the 2-6 BIN range up to
    its balance, and its last 4 digits (never a named test card's, nor one this test run has handed out
    already: the stacks are shared by a whole session) let a test pick out its own messages
    (`card_last4=`)."""
    while (number := _luhn_card(prefix, length))[-4:] in _TEST_CARD_LAST4 | _ISSUED_LAST4:
        pass
    _ISSUED_LAST4.add(number[-4:])
    return number


def _luhn_card(prefix: str, length: int) -> str:
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return body + str((10 - total % 10) % 10)


@asynccontextmanager
async def shop(stack: Any, name: str) -> AsyncIterator[Client]:
    """A client of a merchant of its own (seeded with the list-only fraud rules), closed after use."""
    client = Client(stack.switch_url, stack.seed_merchant(name, fraud_rules="lists"))
    try:
        yield client
    finally:
        await client.close()
