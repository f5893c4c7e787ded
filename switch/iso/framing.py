"""Frame headers: how one ISO 8583 message is delimited on a TCP stream.

A framing object knows its header format and the largest frame it accepts; `reader()` returns an
incremental FrameReader that turns arbitrary TCP chunks (split or coalesced) into whole payloads.
"""

from __future__ import annotations

from switch.iso.profiles import Profile

FRAME_SIZE_MAX_DEFAULT = 8192


class FramingError(ValueError):
    """The byte stream cannot be framed: the connection must be dropped (no way to resynchronise)."""


class Framing:
    """Base class: a length header of `header_size` bytes followed by the payload."""

    header_size: int

    def __init__(self, frame_size_max: int = FRAME_SIZE_MAX_DEFAULT) -> None:
        assert frame_size_max > 0
        self.frame_size_max = frame_size_max

    def encode_header(self, length: int) -> bytes:
        raise NotImplementedError

    def decode_header(self, header: bytes) -> int:
        raise NotImplementedError

    def encode_frame(self, payload: bytes) -> bytes:
        length = len(payload)
        if length == 0:
            raise FramingError("empty payload")
        if length > self.frame_size_max:
            raise FramingError(f"payload of {length} bytes exceeds frame_size_max {self.frame_size_max}")
        return self.encode_header(length) + payload

    def reader(self) -> FrameReader:
        return FrameReader(self)

    def _check_length(self, length: int) -> int:
        if length == 0:
            raise FramingError("zero-length frame")
        if length > self.frame_size_max:
            raise FramingError(f"frame of {length} bytes exceeds frame_size_max {self.frame_size_max}")
        return length


class BinaryLengthFraming(Framing):
    """Unsigned big-endian binary length of `header_bytes` bytes (2 is the common case)."""

    def __init__(self, header_bytes: int = 2, frame_size_max: int = FRAME_SIZE_MAX_DEFAULT) -> None:
        assert header_bytes in (2, 4), header_bytes
        assert frame_size_max < 256**header_bytes, "frame_size_max does not fit the header"
        super().__init__(frame_size_max)
        self.header_size = header_bytes

    def encode_header(self, length: int) -> bytes:
        return length.to_bytes(self.header_size, "big")

    def decode_header(self, header: bytes) -> int:
        return self._check_length(int.from_bytes(header, "big"))


class AsciiLengthFraming(Framing):
    """Zero-padded ASCII decimal length of `digits` characters, e.g. b"0123"."""

    def __init__(self, digits: int = 4, frame_size_max: int = FRAME_SIZE_MAX_DEFAULT) -> None:
        assert 2 <= digits <= 6, digits
        assert frame_size_max < 10**digits, "frame_size_max does not fit the header"
        super().__init__(frame_size_max)
        self.header_size = digits

    def encode_header(self, length: int) -> bytes:
        return b"%0*d" % (self.header_size, length)

    def decode_header(self, header: bytes) -> int:
        # bytes.isdigit() is ASCII-only, so b" 12" or b"+123" are refused, as they should be.
        if not header.isdigit():
            raise FramingError(f"non-decimal ASCII length header {header[: self.header_size]!r}")
        return self._check_length(int(header))


class FrameReader:
    """Incremental reader: feed it TCP chunks, get back complete payloads (possibly none)."""

    __slots__ = ("_framing", "_buffer")

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        framing = self._framing
        header_size = framing.header_size
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= header_size:
            length = framing.decode_header(bytes(buffer[offset : offset + header_size]))
            start = offset + header_size
            if end - start < length:
                break
            frames.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)


def framing_for(profile: Profile, frame_size_max: int = FRAME_SIZE_MAX_DEFAULT) -> Framing:
    """The framing a network profile declares."""
    if profile.framing_kind == "binary":
        return BinaryLengthFraming(profile.framing_header_size, frame_size_max)
    return AsciiLengthFraming(profile.framing_header_size, frame_size_max)
