"""Request bodies of the merchant HTTP API, decoded straight into the engine's commands where the shapes
are the same. Decoders are built once; a validation error carries the path of the offending field
(``at `$.amount```), which becomes the error's ``param``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from msgspec import Struct

from switch.common import errors
from switch.common.validation import error_message, error_param
from switch.payments.commands import Amount, Authorize, Cancel, Capture, ListPayments, Refund


class CaptureBody(Struct, forbid_unknown_fields=True):
    amount_to_capture: Amount | None = None


class CancelBody(Struct, forbid_unknown_fields=True):
    cancellation_reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None


authorize_decoder = msgspec.json.Decoder(Authorize)
capture_decoder = msgspec.json.Decoder(CaptureBody)
cancel_decoder = msgspec.json.Decoder(CancelBody)
refund_decoder = msgspec.json.Decoder(Refund)


def decode(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    if not body.strip():
        raise errors.invalid_request("missing_body", "The request needs a JSON body.")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        raise errors.invalid_request("parameter_invalid", error_message(error), error_param(error)) from None
    except msgspec.DecodeError:
        raise errors.invalid_request("invalid_json", "The request body is not valid JSON.") from None


def capture(payment_id: str, body: bytes) -> Capture:
    request: CaptureBody = decode(capture_decoder, body or b"{}")
    return Capture(payment_id=payment_id, amount_to_capture=request.amount_to_capture)


def cancel(payment_id: str, body: bytes) -> Cancel:
    request: CancelBody = decode(cancel_decoder, body or b"{}")
    return Cancel(payment_id=payment_id, cancellation_reason=request.cancellation_reason)


def list_query(query: dict[str, str]) -> ListPayments:
    return ListPayments(limit=_int_param(query, "limit", 10, 1, 100), starting_after=query.get("starting_after"),
                        ending_before=query.get("ending_before"), created_gte=_time_param(query, "created[gte]"),
                        created_lte=_time_param(query, "created[lte]"))


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise errors.invalid_request("parameter_invalid", f"{name} must be an integer from {low} to {high}.", name)
    return int(text)


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 12:
        raise errors.invalid_request("parameter_invalid", f"{name} must be a Unix timestamp.", name)
    return datetime.fromtimestamp(int(text), UTC)
