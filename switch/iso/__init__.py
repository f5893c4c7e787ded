"""ISO 8583: pure bytes <-> message. No asyncio and no I/O at this layer."""

from switch.iso.codes import ResultCode, field39_for, result_for_field39
from switch.iso.messages import (
    IsoError,
    authorization_request,
    decode,
    encode,
    mask_pan,
    match_key,
    network_request,
    response_for,
)
from switch.iso.profiles import GENERIC, MASTERCARD, PROFILES, VISA, Profile, profile_for

__all__ = [
    "GENERIC", "MASTERCARD", "PROFILES", "VISA", "IsoError", "Profile", "ResultCode", "authorization_request",
    "decode", "encode", "field39_for", "mask_pan", "match_key", "network_request", "profile_for",
    "response_for", "result_for_field39",
]  # fmt: skip
