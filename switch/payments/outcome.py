"""What an operation answers: a result code and the snapshot of what it acted on.

The outcome is the canonical answer: it is what the idempotency row and the replay cache keep (msgpack), so
every front end can render a stored answer in its own format, and a replay renders exactly as the first
answer did.
"""

from __future__ import annotations

import msgspec

from switch.payments.results import Result
from switch.store.records import PaymentRecord, RefundRecord


class Outcome(msgspec.Struct, omit_defaults=True):
    result: Result
    request_id: str                        # the request that produced it (error objects carry it)
    payment: PaymentRecord | None = None
    refund: RefundRecord | None = None
    payment_id: str | None = None          # an error about a payment that exists (readable by id)
    message: str | None = None             # replaces the table's message where it names a value
    param: str | None = None               # replaces the table's param
    retry_after_ms: int | None = None      # a rate-limited request: how long until it may come again


class Listing(msgspec.Struct):
    """The answer of a list command."""

    payments: list[PaymentRecord]
    has_more: bool


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Outcome)


def encode(outcome: Outcome) -> bytes:
    return _encoder.encode(outcome)


def decode(data: bytes) -> Outcome:
    return _decoder.decode(data)


def readable(data: bytes) -> bool:
    """Whether `data` is an outcome this release can read (a replay cache entry may be older)."""
    try:
        _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True
