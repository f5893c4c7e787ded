"""Request bodies and small helpers shared by the integration tests."""

from __future__ import annotations

import secrets
from typing import Any

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
