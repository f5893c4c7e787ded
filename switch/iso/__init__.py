"""ISO 8583: pure bytes <-> message. No asyncio and no I/O at this layer."""

from switch.iso.codes import ResultCode, field39_for, result_for_field39
from switch.iso.messages import (
    IsoError,
    Message,
    authorization_request,
    completion_advice,
    decode,
    encode,
    financial_request,
    mask_pan,
    match_key,
    network_request,
    response_for,
    reversal,
)
from switch.iso.profiles import GENERIC, MASTERCARD, PROFILES, VISA, Profile, profile_for

__all__ = [
    "GENERIC", "MASTERCARD", "PROFILES", "VISA", "IsoError", "Message", "Profile", "ResultCode",
    "authorization_request", "completion_advice", "decode", "encode", "field39_for", "financial_request",
    "mask_pan", "match_key", "network_request", "profile_for", "response_for", "result_for_field39",
    "reversal",
]  # fmt: skip
