"""The vault's wire contract: what the switch and the vault say to each other over the vault's Unix socket.

Frames: a 4-byte big-endian length + a msgpack body, at most FRAME_BYTES_MAX (``FRAMING``, the same frame
reader the network links use). The first frame is ``{"op": "hello", "credential": ...}``; the vault answers
``{"id": 0, "ok": true}`` or an error frame and closes. Then requests ``{"id": n, "op": "tokenize" |
"detokenize" | "mac_key" | "ping", ...}`` are pipelined and answered ``{"id": n, "ok": bool, ...}`` in
completion order.

``mac_key`` (network, key generation) answers the MAC session key the vault derives from the network's MAC
master key inside the HSM (see ``switch.iso.mac``); links ask once per sign-on, never per message.

Both sides import this module and nothing of each other: the switch never imports the vault (which holds the
HSM), and the vault imports only this contract, ``switch.common`` and ``switch.iso``. Message types that can
hold a PAN or CVC mask their repr. ``VaultError`` is the one error type of both sides.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgspec

from switch.iso.framing import BinaryLengthFraming, FramingError

FRAME_HEADER = struct.Struct(">I")
FRAME_BYTES_MAX = 64 * 1024
HELLO_ID = 0
MERCHANT_ID_LENGTH_MAX = 64
CALLER_LENGTH_MAX = 64
CREDENTIAL_LENGTH_MAX = 256

# ----- framing ---------------------------------------------------------------------------------------

FRAMING = BinaryLengthFraming(header_bytes=FRAME_HEADER.size, frame_size_max=FRAME_BYTES_MAX)
FrameError = FramingError


def encode_frame(body: bytes) -> bytes:
    return FRAMING.encode_frame(body)


# ----- messages --------------------------------------------------------------------------------------



class Hello(msgspec.Struct, tag="hello", tag_field="op", forbid_unknown_fields=True):
    credential: str
    caller: str = "switch"

    def __repr__(self) -> str:
        return f"Hello(caller={self.caller!r}, credential='***')"


class PingRequest(msgspec.Struct, tag="ping", tag_field="op", forbid_unknown_fields=True):
    id: int


class TokenizeRequest(msgspec.Struct, tag="tokenize", tag_field="op", forbid_unknown_fields=True):
    id: int
    merchant_id: str
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None = None

    def __repr__(self) -> str:
        return f"TokenizeRequest(id={self.id}, merchant_id={self.merchant_id!r}, number='***', cvc='***')"


class DetokenizeRequest(msgspec.Struct, tag="detokenize", tag_field="op", forbid_unknown_fields=True):
    id: int
    merchant_id: str
    token: str


class MacKeyRequest(msgspec.Struct, tag="mac_key", tag_field="op", forbid_unknown_fields=True):
    id: int
    network: str
    generation: int


Request = PingRequest | TokenizeRequest | DetokenizeRequest | MacKeyRequest


class Response(msgspec.Struct, omit_defaults=True):
    id: int
    ok: bool
    error: str | None = None
    token: str | None = None
    brand: str | None = None
    bin: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = None
    number: str | None = None
    cvc: str | None = None
    key: bytes | None = None  # A MAC session key (mac_key); never in a repr or a log line.

    def __repr__(self) -> str:
        return f"Response(id={self.id}, ok={self.ok}, error={self.error!r}, token={self.token!r})"


REQUEST_DECODER = msgspec.msgpack.Decoder(Request)
HELLO_DECODER = msgspec.msgpack.Decoder(Hello)
RESPONSE_DECODER = msgspec.msgpack.Decoder(Response)
ENCODER = msgspec.msgpack.Encoder()

# ----- errors ----------------------------------------------------------------------------------------

VAULT_ERROR_CODES = frozenset({
    "not_found", "invalid_request", "invalid_number", "incorrect_number", "unsupported_brand",
    "invalid_expiry_month", "invalid_expiry_year", "expired_card", "invalid_cvc", "decrypt_failed",
    "unauthorized", "unavailable",
})


class VaultError(Exception):
    """An operating error with a code from VAULT_ERROR_CODES (an unknown code reads as ``unavailable``).
    Raised by the vault and by its client alike. Never carries card data."""

    retryable = False

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code if not detail else f"{code}: {detail}")
        self.code = code if code in VAULT_ERROR_CODES else "unavailable"


class VaultUnavailable(VaultError):
    """No connection, too many requests in flight, or no answer in time. Safe to retry."""

    retryable = True

    def __init__(self, detail: str = "") -> None:
        super().__init__("unavailable", detail)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token: str
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint_hex: str
