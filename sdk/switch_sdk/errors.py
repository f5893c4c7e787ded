"""Exceptions mirroring the switch's error types (its docs/errors.md): one class per `type`, with the
error object's fields."""

from __future__ import annotations

from typing import Any


class SwitchError(Exception):
    """An error answered by the switch, or a failure to reach it (APIConnectionError)."""

    def __init__(self, message: str, *, http_status: int | None = None, type_: str | None = None,
                 code: str | None = None, param: str | None = None, decline_code: str | None = None,
                 request_id: str | None = None, payment_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.type = type_
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.request_id = request_id
        self.payment_id = payment_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status}, message={self.message!r})"


class CardError(SwitchError):
    """The card was declined or is invalid (402); `decline_code` says why, `payment_id` names the payment."""


class InvalidRequestError(SwitchError):
    """The request is wrong (400, 404); `param` names the field."""


class AuthenticationError(SwitchError):
    """The API key is missing or wrong (401)."""


class RateLimitError(SwitchError):
    """Too many requests (429): retried automatically, raised when the retries run out."""


class IdempotencyError(SwitchError):
    """The idempotency key was used with another request (400), or is in use by one in flight (409)."""


class APIError(SwitchError):
    """The switch could not complete the request (5xx): retryable with the same idempotency key."""


class APIConnectionError(SwitchError):
    """The switch could not be reached, or the connection broke before the answer."""


_BY_TYPE: dict[str, type[SwitchError]] = {
    "card_error": CardError, "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError, "idempotency_error": IdempotencyError, "api_error": APIError,
}


def from_answer(status: int, error: dict[str, Any]) -> SwitchError:
    kind = RateLimitError if status == 429 else _BY_TYPE.get(str(error.get("type")), SwitchError)
    return kind(str(error.get("message") or "The switch answered an error."), http_status=status,
                type_=error.get("type"), code=error.get("code"), param=error.get("param"),
                decline_code=error.get("decline_code"), request_id=error.get("request_id"),
                payment_id=error.get("payment_id"))
