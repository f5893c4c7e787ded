"""Merchant API request and response types: msgspec Structs are the schema.

Requests forbid unknown fields and bound every value; decoders are built once. A validation error carries
the path of the offending field (``at `$.amount```), which becomes the error's ``param``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from switch.common.currency import AMOUNT_MAX
from switch.common.validation import error_message, error_param  # noqa: F401 - re-exported for the API

Amount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
CurrencyCode = Annotated[str, Meta(pattern="^[a-z]{3}$")]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=40)]
MetadataValue = Annotated[str, Meta(max_length=500)]
ObjectId = Annotated[str, Meta(pattern="^[a-z]{2,4}_[0-9A-Za-z]{10,40}$")]


class CardInput(Struct, forbid_unknown_fields=True):
    number: Annotated[str, Meta(min_length=12, max_length=19, pattern="^[0-9]+$")]
    exp_month: Annotated[int, Meta(ge=1, le=12)]
    exp_year: Annotated[int, Meta(ge=2000, le=2099)]
    cvc: Annotated[str, Meta(min_length=3, max_length=4, pattern="^[0-9]+$")] | None = None

    def __repr__(self) -> str:
        # Raw card data lives here only until it is handed to the vault; never print it.
        masked = f"{self.number[:6]}{'*' * (len(self.number) - 10)}{self.number[-4:]}"
        return f"CardInput(number='{masked}', exp_month={self.exp_month}, exp_year={self.exp_year}, cvc='***')"

    __str__ = __repr__


class CardMethod(Struct, forbid_unknown_fields=True):
    card: CardInput


class PaymentCreate(Struct, forbid_unknown_fields=True):
    amount: Amount
    currency: CurrencyCode
    # Either a vault token ("tok_...") or raw card data, which the switch tokenizes at once.
    payment_method: Annotated[str, Meta(pattern="^tok_[0-9A-Za-z]{10,40}$")] | CardMethod
    capture_method: Literal["automatic", "manual"] = "automatic"
    description: Annotated[str, Meta(max_length=1000)] | None = None
    statement_descriptor: Annotated[str, Meta(min_length=1, max_length=22, pattern="^[^<>\"'\\\\]*$")] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=50)] | None = None


class CaptureRequest(Struct, forbid_unknown_fields=True):
    amount_to_capture: Amount | None = None


class CancelRequest(Struct, forbid_unknown_fields=True):
    cancellation_reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None


class RefundCreate(Struct, forbid_unknown_fields=True):
    payment: ObjectId
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None


class CardDetails(Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class PaymentMethodDetails(Struct):
    token: str
    card: CardDetails
    type: str = "card"


class Payment(Struct):
    """The payment object returned to merchants. Never carries a PAN: brand and last 4 only."""

    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    currency: str
    capture_method: str
    payment_method: PaymentMethodDetails
    network: str
    authorization_code: str | None
    network_response_code: str | None
    decline_code: str | None
    failure_message: str | None
    description: str | None
    statement_descriptor: str | None
    metadata: dict[str, str]
    created: int
    object: str = "payment"


class Refund(Struct):
    id: str
    payment: str
    amount: int
    currency: str
    status: str
    failure_reason: str | None
    created: int
    object: str = "refund"


def refund_object(row: Any) -> Refund:
    """A refund as merchants see it, from a row holding refunds' id, payment_id, amount, currency, status,
    failure_code and created_at."""
    return Refund(id=row["id"], payment=row["payment_id"], amount=row["amount"], currency=row["currency"],
                  status=row["status"], failure_reason=row["failure_code"], created=int(row["created_at"].timestamp()))


class PaymentList(Struct):
    data: list[Payment]
    has_more: bool
    url: str = "/v1/payments"
    object: str = "list"


payment_create_decoder = msgspec.json.Decoder(PaymentCreate)
capture_decoder = msgspec.json.Decoder(CaptureRequest)
cancel_decoder = msgspec.json.Decoder(CancelRequest)
refund_create_decoder = msgspec.json.Decoder(RefundCreate)
encoder = msgspec.json.Encoder()
