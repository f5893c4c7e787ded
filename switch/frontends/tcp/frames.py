"""The merchant TCP protocol's frames (docs/merchant-protocol.md): a 4-byte big-endian length, then that many
bytes of msgpack holding one map. Pure: no asyncio.

    client -> switch   {"op": "hello", "v": 1, "api_key": "sk_..."}           first, once
                       {"op": "payments.create", "id": 7, "idempotency_key": "...", "body": {...}}
                       {"op": "ping", "id": 8}
    switch -> client   {"op": "hello", "v": 1, "merchant": "acct_...", "in_flight_max": 128, ...}
                       {"id": 7, "status": 200, "body": {...the payment...}, "replayed": false}
                       {"id": 8, "op": "pong"}
                       {"op": "error", "code": "...", "message": "..."}        then the switch closes
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

VERSION = 1
FRAME_BYTES_MAX = 64 * 1024
HEADER = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(dict[str, Any])


class FrameError(ValueError):
    """A frame that breaks the protocol: its connection is closed after an error frame with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message: Any) -> bytes:
    payload = _encoder.encode(message)
    return HEADER.pack(len(payload)) + payload


class Reader:
    """Frames out of a byte stream, bounded: a length over FRAME_BYTES_MAX is refused before its bytes come."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer)
            if length == 0 or length > FRAME_BYTES_MAX:
                raise FrameError("frame_too_large" if length else "frame_empty",
                                 f"A frame holds 1 to {FRAME_BYTES_MAX} bytes; this one says {length}.")
            if len(self.buffer) < HEADER.size + length:
                break
            payload = bytes(self.buffer[HEADER.size:HEADER.size + length])
            del self.buffer[:HEADER.size + length]
            try:
                frames.append(_decoder.decode(payload))
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                # RecursionError: arrays or maps nested past the decoder's depth (64 KiB holds 60,000 levels).
                # Out of data_received it would drop the connection unanswered, with a traceback in the log.
                raise FrameError("frame_invalid", "A frame is one msgpack map.") from None
        return frames
