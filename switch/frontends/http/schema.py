"""Request bodies of the merchant HTTP API, decoded straight into the engine's commands where the shapes
are the same. Decoders are built once; a validation error carries the path of the offending field
(``at `$.amount```), which becomes the error's ``param``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal, TypeVar
from urllib.parse import parse_qsl

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
        command = decoder.decode(body)
    except msgspec.ValidationError as error:
        raise errors.invalid_request("parameter_invalid", error_message(error), error_param(error)) from None
    except msgspec.DecodeError:
        raise errors.invalid_request("invalid_json", "The request body is not valid JSON.") from None
    if repeats_a_key(body):
        # JSON parsers disagree on which of two equal keys wins: a request must mean one thing.
        raise errors.invalid_request("duplicate_key", "An object in the request body repeats a key.")
    return command


T = TypeVar("T")
_generic_decoder = msgspec.json.Decoder()
_UNDECODED = object()
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def _strings(value: object) -> int:
    """How many JSON strings (keys and string values) `value` holds."""
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        count = len(value)
        for item in value.values():
            count += 1 if type(item) is str else _strings(item) if isinstance(item, (dict, list)) else 0
        return count
    if isinstance(value, list):
        return sum(_strings(item) for item in value)
    return 0


def repeats_a_key(body: bytes, decoded: object = _UNDECODED) -> bool:
    """Whether a JSON object in `body` (valid JSON) repeats a key. Each string of the text is two unescaped
    quotes; a decoded object keeps one member per key, so a repeated key leaves the text with more strings
    than the decoded value holds. About 1 µs for a payment body. `decoded`: `body` decoded already."""
    text = _ESCAPE.sub(b"", body) if b"\\" in body else body
    value = _generic_decoder.decode(body) if decoded is _UNDECODED else decoded
    return text.count(b'"') != 2 * _strings(value)


class EmptyBody(Struct, forbid_unknown_fields=True):
    pass


_empty_decoder = msgspec.json.Decoder(EmptyBody)


def empty(body: bytes, command: T) -> T:
    """A command that takes nothing from its body: an empty body or {}."""
    decode(_empty_decoder, body or b"{}")
    return command


def capture(payment_id: str, body: bytes) -> Capture:
    return capture_command(payment_id, decode(capture_decoder, body or b"{}"))


def capture_command(payment_id: str, request: CaptureBody) -> Capture:
    return Capture(payment_id=payment_id, amount_to_capture=request.amount_to_capture)


def cancel(payment_id: str, body: bytes) -> Cancel:
    return cancel_command(payment_id, decode(cancel_decoder, body or b"{}"))


def cancel_command(payment_id: str, request: CancelBody) -> Cancel:
    return Cancel(payment_id=payment_id, cancellation_reason=request.cancellation_reason)


def canonical(command: object) -> bytes:
    """What a payment command's idempotency fingerprint covers: the decoded command, not a front end's bytes,
    so the same request over HTTP (whatever its JSON spacing) and over TCP is the same request."""
    return msgspec.msgpack.encode(command)


IDEMPOTENCY_KEY_LENGTH_MAX = 255


def checked_idempotency_key(key: str, name: str) -> str:
    """An idempotency key of 1 to 255 printable ASCII characters; `name` is where it came from (the
    Idempotency-Key header, the TCP protocol's idempotency_key field)."""
    if not key or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not (key.isascii() and key.isprintable()):
        raise errors.invalid_request("idempotency_key_invalid", f"The {name} must be 1 to "
                                     f"{IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters.", name)
    return key


QUERY_FIELDS_MAX = 64
TIME_MAX = 253_402_300_799              # 9999-12-31T23:59:59Z: the last second a datetime holds
_PAYMENT_ID = re.compile(r"^pay_[0-9A-Za-z]{10,40}$")


def query_params(query: str) -> dict[str, str]:
    """A query string's parameters; a blank one is kept (`limit=` is a bad limit, not no limit)."""
    try:
        return dict(parse_qsl(query, keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX))
    except ValueError:
        raise errors.invalid_request("parameter_invalid", f"A query has at most {QUERY_FIELDS_MAX} parameters.") \
            from None


def list_query(query: dict[str, str], cursor: re.Pattern[str] | None = _PAYMENT_ID) -> ListPayments:
    """limit, created[gte|lte] and the cursors, which must match `cursor` (None: the caller checks them)."""
    return ListPayments(limit=int_param(query, "limit", 10, 1, 100),
                        starting_after=_cursor(query, "starting_after", cursor),
                        ending_before=_cursor(query, "ending_before", cursor),
                        created_gte=_time_param(query, "created[gte]"), created_lte=_time_param(query, "created[lte]"))


def _cursor(query: dict[str, str], name: str, pattern: re.Pattern[str] | None) -> str | None:
    text = query.get(name)
    if text is not None and pattern is not None and not pattern.match(text):
        raise errors.invalid_request("parameter_invalid", f"{name} must be an id of this list.", name)
    return text


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:   # not "²"
        raise errors.invalid_request("parameter_invalid", f"{name} must be an integer from {low} to {high}.", name)
    return int(text)


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) > TIME_MAX:
        raise errors.invalid_request("parameter_invalid", f"{name} must be a Unix timestamp up to {TIME_MAX}.", name)
    return datetime.fromtimestamp(int(text), UTC)
