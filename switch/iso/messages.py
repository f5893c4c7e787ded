"""Build, encode and decode ISO 8583 messages. Pure functions: no asyncio, no I/O.

A message is a plain dict as pyiso8583 uses it: "t" is the MTI and field numbers are string keys
("2", "39", ...) with string values. Bitmaps are computed on encode and dropped on decode, so
`decode(p, encode(p, m)) == m` for any valid message `m`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import iso8583

from switch.iso.profiles import Profile

Message = dict[str, Any]

MTI_AUTHORIZATION_REQUEST = "0100"
MTI_AUTHORIZATION_RESPONSE = "0110"
MTI_FINANCIAL_REQUEST = "0200"
MTI_FINANCIAL_RESPONSE = "0210"
MTI_COMPLETION_ADVICE = "0220"
MTI_COMPLETION_ADVICE_REPEAT = "0221"
MTI_COMPLETION_RESPONSE = "0230"
MTI_REVERSAL_REQUEST = "0400"
MTI_REVERSAL_RESPONSE = "0410"
MTI_REVERSAL_ADVICE = "0420"
MTI_REVERSAL_ADVICE_REPEAT = "0421"
MTI_REVERSAL_ADVICE_RESPONSE = "0430"
MTI_NETWORK_REQUEST = "0800"
MTI_NETWORK_RESPONSE = "0810"

NETWORK_SIGN_ON = "001"
NETWORK_SIGN_OFF = "002"
NETWORK_ECHO = "301"

PROCESSING_CODE_PURCHASE = "000000"
PROCESSING_CODE_REFUND = "200000"
POS_ENTRY_ECOMMERCE = "010"  # PAN entered manually / card not present.

# Fields a response carries back unchanged from its request, so the acquirer can match and audit it.
_ECHO_FIELDS = (
    "2",
    "3",
    "4",
    "7",
    "11",
    "12",
    "13",
    "18",
    "22",
    "25",
    "32",
    "37",
    "41",
    "42",
    "49",
    "70",
    "90",
    "95",
)

# Field 48 carries tagged private data: 2-character tag, 3-digit length, value.
FIELD48_TAG_CVV = "CV"

AMOUNT_MINOR_MAX = 999_999_999_999  # Field 4 is 12 digits of minor units.
ACQUIRER_ID_DIGITS_MAX = 11


class IsoError(ValueError):
    """A message could not be built, encoded or decoded. The text never carries card data."""


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the most a log line, error or metric may show."""
    if len(pan) < 13:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


_last_second: tuple[float, str] = (float("nan"), "")      # NaN: equal to no second


def transmission_datetime(now: datetime | None = None) -> str:
    """Field 7, MMDDhhmmss of `now` (the switch's are UTC). A UTC moment is formatted once a second:
    strftime took 2 µs a call, and a payment makes two or three; any other is formatted as given."""
    global _last_second
    now = now or datetime.now(UTC)
    if now.tzinfo is not UTC:
        return now.strftime("%m%d%H%M%S")
    second = now.timestamp() // 1
    last, text = _last_second
    if second != last:
        text = now.strftime("%m%d%H%M%S")
        _last_second = (second, text)
    return text


def authorization_request(
    *,
    pan: str,
    amount_minor: int,
    currency: str,
    stan: str,
    rrn: str,
    terminal_id: str,
    merchant_id: str,
    expiry_yymm: str,
    cvv: str | None = None,
    processing_code: str = PROCESSING_CODE_PURCHASE,
    pos_entry_mode: str = POS_ENTRY_ECOMMERCE,
    now: datetime | None = None,
) -> dict[str, str]:
    """An 0100 authorization request. `currency` is the ISO 4217 numeric code, e.g. "978"."""
    return _card_request(
        MTI_AUTHORIZATION_REQUEST, pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id,
        expiry_yymm, cvv, processing_code, pos_entry_mode, now,
    )  # fmt: skip


def financial_request(
    *,
    pan: str,
    amount_minor: int,
    currency: str,
    stan: str,
    rrn: str,
    terminal_id: str,
    merchant_id: str,
    expiry_yymm: str,
    cvv: str | None = None,
    processing_code: str = PROCESSING_CODE_PURCHASE,
    pos_entry_mode: str = POS_ENTRY_ECOMMERCE,
    now: datetime | None = None,
) -> dict[str, str]:
    """An 0200 financial request: a sale (processing code 00xxxx) or a refund (20xxxx)."""
    return _card_request(
        MTI_FINANCIAL_REQUEST, pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id,
        expiry_yymm, cvv, processing_code, pos_entry_mode, now,
    )  # fmt: skip


def completion_advice(
    *,
    repeat: bool,
    pan: str,
    amount_minor: int,
    currency: str,
    stan: str,
    rrn: str,
    terminal_id: str,
    merchant_id: str,
    expiry_yymm: str,
    processing_code: str,
    original_mti: str,
    original_transmitted_at: str,
    acquirer_id: str,
    replacement_amount_minor: int,
    auth_code: str | None,
    now: datetime | None = None,
) -> dict[str, str]:
    """An 0220 (0221 when `repeat`) completion advice: capture of the 0100 identified by the original data.

    Field 4 is the original authorized amount; a capture below it (`replacement_amount_minor`) goes in
    field 95 and releases the rest of the hold. Fields 11, 37 and 41 are the original's.
    """
    if not 0 < replacement_amount_minor <= amount_minor:
        raise IsoError(f"capture amount {replacement_amount_minor} outside 1..{amount_minor} (the original)")
    return _original_data_message(
        MTI_COMPLETION_ADVICE_REPEAT if repeat else MTI_COMPLETION_ADVICE,
        pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id, expiry_yymm, processing_code,
        original_mti, original_transmitted_at, acquirer_id, auth_code, now,
        replacement_amount_minor if replacement_amount_minor < amount_minor else None,
    )  # fmt: skip


def reversal(
    *,
    repeat: bool,
    pan: str,
    amount_minor: int,
    currency: str,
    stan: str,
    rrn: str,
    terminal_id: str,
    merchant_id: str,
    expiry_yymm: str,
    processing_code: str,
    original_mti: str,
    original_transmitted_at: str,
    acquirer_id: str,
    replacement_amount_minor: int,
    auth_code: str | None,
    now: datetime | None = None,
) -> dict[str, str]:
    """An 0400 reversal (0421 repeat advice when `repeat`) of the 0100 or 0200 named by the original data.

    `replacement_amount_minor` 0 reverses everything; above 0 it is a partial reversal down to that amount
    (field 95). Field 4 is the original amount; fields 11, 37 and 41 are the original's.
    """
    if not 0 <= replacement_amount_minor <= amount_minor:
        raise IsoError(
            f"replacement amount {replacement_amount_minor} outside 0..{amount_minor}, the original"
        )
    return _original_data_message(
        MTI_REVERSAL_ADVICE_REPEAT if repeat else MTI_REVERSAL_REQUEST,
        pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id, expiry_yymm, processing_code,
        original_mti, original_transmitted_at, acquirer_id, auth_code, now,
        replacement_amount_minor or None,
    )  # fmt: skip


def original_data_elements(
    original_mti: str, stan: str, original_transmitted_at: str, acquirer_id: str
) -> str:
    """Field 90: original MTI, STAN and field 7, acquirer id (11, zero-padded), forwarding id (11 zeros)."""
    parts = ((original_mti, 4), (stan, 6), (original_transmitted_at, 10))
    for value, size in parts:
        if len(value) != size or not _digits(value):
            raise IsoError(f"field 90: original MTI, STAN and field 7 must be {size} digits")
    if not (0 < len(acquirer_id) <= ACQUIRER_ID_DIGITS_MAX and _digits(acquirer_id)):
        raise IsoError(f"field 90: acquirer id must be 1..{ACQUIRER_ID_DIGITS_MAX} digits")
    return f"{original_mti}{stan}{original_transmitted_at}{acquirer_id.zfill(11)}{'0' * 11}"


def parse_original_data_elements(value: str) -> tuple[str, str, str]:
    """(original MTI, original STAN, original field 7) from field 90. Raises IsoError."""
    if len(value) != 42 or not _digits(value):
        raise IsoError("field 90 must be 42 digits")
    return value[0:4], value[4:10], value[10:20]


def replacement_amounts(actual_minor: int) -> str:
    """Field 95: actual amount (12 digits), settlement amount (12 zeros), fees (18 zeros)."""
    if not 0 <= actual_minor <= AMOUNT_MINOR_MAX:
        raise IsoError(f"replacement amount {actual_minor} outside 0..{AMOUNT_MINOR_MAX}")
    return f"{actual_minor:012d}{'0' * 30}"


def parse_replacement_amounts(value: str) -> int:
    """The actual amount from field 95. Raises IsoError."""
    actual = value[:12]
    if len(value) != 42 or not _digits(actual):
        raise IsoError("field 95 must be 42 characters starting with a 12-digit amount")
    return int(actual)


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _base_message(
    mti: str, pan: str, amount_minor: int, currency: str, stan: str, rrn: str, terminal_id: str,
    merchant_id: str, expiry_yymm: str, processing_code: str, now: datetime,
) -> dict[str, str]:  # fmt: skip
    """The fields every card message shares: card, amount, trace numbers and card acceptor."""
    if not (0 <= amount_minor <= AMOUNT_MINOR_MAX):
        raise IsoError(f"amount_minor {amount_minor} outside 0..{AMOUNT_MINOR_MAX}")
    if len(terminal_id) > 8 or len(merchant_id) > 15:
        raise IsoError("terminal_id is at most 8 and merchant_id at most 15 characters")
    return {
        "t": mti,
        "2": pan,
        "3": processing_code,
        "4": f"{amount_minor:012d}",
        "7": transmission_datetime(now),
        "11": stan,
        "12": now.strftime("%H%M%S"),
        "13": now.strftime("%m%d"),
        "14": expiry_yymm,
        "37": rrn,
        "41": terminal_id.ljust(8),
        "42": merchant_id.ljust(15),
        "49": currency,
    }


def _card_request(
    mti: str, pan: str, amount_minor: int, currency: str, stan: str, rrn: str, terminal_id: str,
    merchant_id: str, expiry_yymm: str, cvv: str | None, processing_code: str, pos_entry_mode: str,
    now: datetime | None,
) -> dict[str, str]:  # fmt: skip
    message = _base_message(
        mti, pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id, expiry_yymm, processing_code,
        now or datetime.now(UTC),
    )  # fmt: skip
    message["22"] = pos_entry_mode
    if cvv is not None:
        message["48"] = field48_encode({FIELD48_TAG_CVV: cvv})
    return message


def _original_data_message(
    mti: str, pan: str, amount_minor: int, currency: str, stan: str, rrn: str, terminal_id: str,
    merchant_id: str, expiry_yymm: str, processing_code: str, original_mti: str, original_transmitted_at: str,
    acquirer_id: str, auth_code: str | None, now: datetime | None, replacement_minor: int | None,
) -> dict[str, str]:  # fmt: skip
    """A message about an earlier one: keeps its STAN, RRN and terminal and names it in field 90."""
    message = _base_message(
        mti, pan, amount_minor, currency, stan, rrn, terminal_id, merchant_id, expiry_yymm, processing_code,
        now or datetime.now(UTC),
    )  # fmt: skip
    message["90"] = original_data_elements(original_mti, stan, original_transmitted_at, acquirer_id)
    if replacement_minor is not None:
        message["95"] = replacement_amounts(replacement_minor)
    if auth_code:
        if len(auth_code) > 6:
            raise IsoError("auth_code is at most 6 characters")
        message["38"] = auth_code.ljust(6)
    return message


def network_request(code: str, stan: str, now: datetime | None = None) -> dict[str, str]:
    """An 0800 network management request: sign-on "001", sign-off "002", echo "301"."""
    return {"t": MTI_NETWORK_REQUEST, "7": transmission_datetime(now), "11": stan, "70": code}


def response_mti(mti: str) -> str:
    """The response MTI for a request or advice: 0100 -> 0110, 0420/0421 -> 0430."""
    if len(mti) != 4 or not mti.isdigit() or int(mti[2]) % 2:
        raise IsoError(f"MTI {mti!r} is not a request or advice")
    return f"{mti[:2]}{int(mti[2]) + 1}0"


def is_response(mti: str) -> bool:
    """True for x1x0 / x3x0 style responses (odd message function digit)."""
    return len(mti) == 4 and mti[2] in "13579"


def response_for(request: dict[str, str], code: str, **fields: str) -> dict[str, str]:
    """The response to `request` with field 39 = `code`, echoing the matching fields.

    Extra fields are passed by number, e.g. `response_for(req, "00", **{"38": "A1B2C3"})`.
    """
    response = {"t": response_mti(request["t"])}
    for key in _ECHO_FIELDS:
        value = request.get(key)
        if value is not None:
            response[key] = value
    response["39"] = code
    response.update(fields)
    return response


def match_key(message: dict[str, str]) -> tuple[str, str, str]:
    """(message pair, terminal id, STAN): identical for a request or advice and its response.

    The pair is the MTI's version, class and function rounded down to even: 0100/0110 -> "010",
    0200/0210 -> "020", 0220/0221/0230 -> "022", 0400/0410 -> "040", 0420/0421/0430 -> "042". So an 0220
    or 0400 that keeps its original's STAN never collides with a request of another kind in flight.
    """
    mti = message["t"]
    function = mti[2:3]
    pair = f"{mti[:2]}{int(function) & ~1}" if function.isdigit() else mti[:3]
    return (pair, message.get("41", ""), message.get("11", ""))


def field48_encode(tags: dict[str, str]) -> str:
    return "".join(f"{tag}{len(value):03d}{value}" for tag, value in tags.items())


def field48_decode(value: str) -> dict[str, str]:
    """Parse tagged field 48; malformed data raises IsoError (without echoing the data)."""
    tags: dict[str, str] = {}
    index = 0
    while index < len(value):
        length_text = value[index + 2 : index + 5]
        if len(length_text) != 3 or not length_text.isdigit():
            raise IsoError(f"field 48 malformed at offset {index}")
        end = index + 5 + int(length_text)
        if end > len(value):
            raise IsoError(f"field 48 tag at offset {index} runs past the end")
        tags[value[index : index + 2]] = value[index + 5 : end]
        index = end
    return tags


def encode(profile: Profile, message: dict[str, str]) -> bytes:
    """Encode a message for `profile`'s wire format. Raises IsoError."""
    mti = message.get("t", "?")
    for key in profile.numeric_fields.intersection(message):
        value = message[key]
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise IsoError(f"{profile.name} {mti}: field {key} must be digits")
    if profile.codec is not None:
        encoded = profile.codec.encode(message)
        if encoded is not None:
            return encoded
    try:
        # The reference codec, for what the compiled one leaves to it (errors included). It writes
        # bitmaps into the dict it is given, so it gets a copy.
        data, _ = iso8583.encode(dict(message), profile.spec)  # type: ignore[arg-type]
    except iso8583.EncodeError as error:
        raise IsoError(f"{profile.name} {mti}: cannot encode field {error.field}: {error.msg}") from None
    except KeyError as error:
        raise IsoError(f"{profile.name} {mti}: field {error.args[0]} is not in the profile") from None
    except (TypeError, ValueError) as error:
        raise IsoError(f"{profile.name} {mti}: cannot encode: {type(error).__name__}") from None
    return bytes(data)


def decode(profile: Profile, data: bytes) -> dict[str, Any]:
    """Decode one message (without its frame header). Raises IsoError."""
    if profile.codec is not None:
        message = profile.codec.decode(data)
        if message is not None:
            return message
    try:
        message, _ = iso8583.decode(data, profile.spec)  # type: ignore[arg-type]
    except iso8583.DecodeError as error:
        raise IsoError(f"{profile.name}: cannot decode field {error.field}: {error.msg}") from None
    except KeyError as error:
        raise IsoError(f"{profile.name}: field {error.args[0]} is not in the profile") from None
    except (TypeError, ValueError) as error:
        raise IsoError(f"{profile.name}: cannot decode: {type(error).__name__}") from None
    message.pop("p", None)
    message.pop("1", None)
    message.pop("h", None)
    return message
