"""What a front end asks of the payments engine: typed commands, decoded and validated by the front end.

No HTTP here: a command is the same whichever front end built it (the merchant HTTP API decodes its JSON
bodies straight into them). Types are the schema: every value is bounded, unknown fields are refused.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from switch.common.cards import CardInput
from switch.common.currency import AMOUNT_MAX
from switch.common.ids import OBJECT_ID
from switch.common.validation import STATEMENT_TEXT, STORABLE_TEXT
from switch.idempotency.ratelimit import Buckets
from switch.merchants import Merchant

Amount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
CurrencyCode = Annotated[str, Meta(pattern=r"^[a-z]{3}(?!\n)$")]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=40, pattern=STORABLE_TEXT)]
MetadataValue = Annotated[str, Meta(max_length=500, pattern=STORABLE_TEXT)]
ObjectId = Annotated[str, Meta(pattern=rf"^{OBJECT_ID}(?!\n)$")]
EMAIL = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}(?!\n)$"
TokenId = Annotated[str, Meta(pattern=r"^tok_[0-9A-Za-z]{10,40}(?!\n)$")]


METADATA_KEYS_MAX = 50


class Caller(Struct, frozen=True):
    """Who asks, and under which idempotency key (mutating commands only); `rate` are the rate-limit
    buckets the request takes from, in the same Redis command as its idempotency lock."""

    merchant: Merchant
    request_id: str
    idempotency_key: str = ""
    fingerprint: bytes = b""
    rate: Buckets | None = None


Card = CardInput          # the kernel's bounded, masked card input (the vault's public API takes the same)


class CardMethod(Struct, forbid_unknown_fields=True):
    card: Card


class CustomerDetails(Struct, forbid_unknown_fields=True):
    """What the merchant knows of the buyer, for fraud screening (switch.fraud)."""

    ip_address: Annotated[str, Meta(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f:.]+(?!\n)$")] | None = None
    email: Annotated[str, Meta(min_length=3, max_length=254, pattern=EMAIL)] | None = None

    def __post_init__(self) -> None:
        if self.ip_address is not None:
            try:
                address = ipaddress.ip_address(self.ip_address)
            except ValueError:
                raise ValueError("ip_address is not an IPv4 or IPv6 address") from None
            mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            self.ip_address = (mapped or address).compressed
        if self.email is not None:
            self.email = self.email.lower()


class Authorize(Struct, forbid_unknown_fields=True):
    """Authorize (capture_method manual) or sell (automatic): a 0100 or a 0200."""

    amount: Amount
    currency: CurrencyCode
    # Either a vault token ("tok_...") or raw card data, which the switch tokenizes at once.
    payment_method: TokenId | CardMethod
    capture_method: Literal["automatic", "manual"] = "automatic"
    description: Annotated[str, Meta(max_length=1000, pattern=STORABLE_TEXT)] | None = None
    statement_descriptor: Annotated[str, Meta(min_length=1, max_length=22, pattern=STATEMENT_TEXT)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=METADATA_KEYS_MAX)] | None = None
    customer_details: CustomerDetails | None = None


class ConfirmDraft(Authorize, kw_only=True):
    """An Authorize whose payment id a front end chose before (a Stripe PaymentIntent created unconfirmed)."""

    payment_id: ObjectId


class Capture(Struct, kw_only=True):
    payment_id: str
    amount_to_capture: int | None = None


class Cancel(Struct, kw_only=True):
    payment_id: str
    cancellation_reason: str | None = None


class Refund(Struct, forbid_unknown_fields=True):
    payment: ObjectId
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None


class ApproveReview(Struct, kw_only=True):
    """Close a payment's open review as legitimate; one its merchant asked to capture automatically is
    captured now."""

    payment_id: str


class RejectReview(Struct, kw_only=True):
    """Close a payment's open review as fraudulent: the authorization is canceled and reversed."""

    payment_id: str


class GetPayment(Struct):
    payment_id: str


class ListPayments(Struct, kw_only=True):
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    created_gte: datetime | None = None
    created_lte: datetime | None = None


class GetRefund(Struct):
    refund_id: str


class ListRefunds(Struct, kw_only=True):
    limit: int = 10
    payment_id: str | None = None          # one payment's refunds, or all the merchant's
    starting_after: str | None = None
    ending_before: str | None = None


class UpdatePayment(Struct):
    """Change what the merchant tells about a payment: its description, and metadata merged into its own
    (an empty value removes its key). Not a state change: no event, no idempotency key."""

    payment_id: str
    description: str | None = None
    metadata: dict[str, str] | None = None


Mutation = Authorize | Capture | Cancel | Refund | ApproveReview | RejectReview
