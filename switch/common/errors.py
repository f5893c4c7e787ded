"""Errors a front end answers itself (bad input, authentication), rendered as Stripe-style error objects.
Outcomes of the payments engine map to the same objects through switch.payments.results.

``{"error": {"type", "code", "decline_code", "message", "param", "request_id"}}``. Messages are written
for merchants and never carry card data. The table of codes lives in docs/errors.md.
"""

from __future__ import annotations

import re

import msgspec

from switch.common.cards import PAN_LENGTH_MAX, PAN_LENGTH_MIN, luhn_valid

# A run of 12-19 digits on its own that passes the Luhn check is read as a card number: a message or param
# that quotes a merchant's input (an unknown id, an enum value) must not carry one back, nor into a log
# line. Runs inside ids (evt_ and 16 digits) and our limits (999999999999) are left as they are.
_CARD_NUMBER_LIKE = re.compile(rf"(?<![0-9A-Za-z_])[0-9]{{{PAN_LENGTH_MIN},{PAN_LENGTH_MAX}}}(?![0-9A-Za-z_])")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable, never its value."""


class ApiError(Exception):
    """An expected failure with its HTTP status; ``retryable`` marks errors a client may simply retry."""

    def __init__(self, status: int, type_: str, code: str, message: str, *, param: str | None = None,
                 decline_code: str | None = None, retryable: bool = False, payment_id: str | None = None) -> None:
        message = _masked(message)
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = _masked(param) if param else param
        self.decline_code = decline_code
        self.retryable = retryable
        self.payment_id = payment_id

    def body(self, request_id: str) -> bytes:
        error: dict[str, object] = {
            "type": self.type, "code": self.code, "decline_code": self.decline_code,
            "message": self.message, "param": self.param, "request_id": request_id,
        }
        if self.payment_id:
            error["payment_id"] = self.payment_id   # the failed payment, readable with GET /v1/payments/{id}
        return msgspec.json.encode({"error": error})


def _masked(text: str) -> str:
    return _CARD_NUMBER_LIKE.sub(_card_number_masked, text) if len(text) >= 12 else text


def _card_number_masked(found: re.Match[str]) -> str:
    digits = found.group()
    return "[card number]" if luhn_valid(digits) else digits


def invalid_request(code: str, message: str, param: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, "invalid_request_error", code, message, param=param)


def authentication_error(message: str) -> ApiError:
    return ApiError(401, "authentication_error", "invalid_api_key", message)


def service_unavailable(code: str, message: str) -> ApiError:
    return ApiError(503, "api_error", code, message, retryable=True)
