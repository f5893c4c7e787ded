"""The payment switch's merchant SDK: payments over HTTP or the pipelined TCP protocol.

    from switch_sdk import Client, CardError

    with Client("sk_test_...", base_url="http://127.0.0.1:8080") as client:
        payment = client.create_payment(2000, "usd", {"card": {"number": "4242424242424242",
                                                              "exp_month": 12, "exp_year": 2030}})
"""

from switch_sdk.client import AsyncClient, Client
from switch_sdk.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    CardError,
    IdempotencyError,
    InvalidRequestError,
    RateLimitError,
    SwitchError,
)
from switch_sdk.models import Event, Payment, Refund
from switch_sdk.webhooks import WebhookVerificationError, verify

__all__ = ["APIConnectionError", "APIError", "AsyncClient", "AuthenticationError", "CardError", "Client", "Event",
           "IdempotencyError", "InvalidRequestError", "Payment", "RateLimitError", "Refund", "SwitchError",
           "WebhookVerificationError", "verify"]
