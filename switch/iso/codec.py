"""A compiled ISO 8583 codec: a profile's pyiso8583 spec turned into one small function per field, once.

pyiso8583 reads the spec dict, builds an "encoded document" and formats error text for every field of
every message; that is about 47 µs per 0100 encode + 0110 decode, paid by the switch and again by the
simulator on each payment. This module does the same byte work with the per-field decisions taken
ahead of time, for the spec shapes our profiles use (see `compile_codec`).

pyiso8583 stays the reference: `Codec.encode` and `Codec.decode` return None for anything they do not
handle exactly as it would (an unsupported field, a tertiary bitmap, any malformed value or input), and
the caller then asks pyiso8583, which gives the real result or the real error. tests/unit/test_codec.py
checks both agree, byte for byte and value for value, on generated messages and on garbage.
"""

from __future__ import annotations

import binascii
import codecs
from collections.abc import Callable, Mapping
from typing import Any

FieldEncoder = Callable[[str], bytes]
# (data, offset) -> (value, offset after the field)
FieldDecoder = Callable[[bytes, int], tuple[str, int]]

_FIELD_1 = 1 << 127
_FIELDS_65_TO_128 = (1 << 64) - 1
_SKIPPED_KEYS = frozenset({"h", "t", "p", "1", "65"})   # never data fields for pyiso8583's encoder
# For each (bitmap byte index, byte value): the field numbers that byte switches on, in order.
_FIELDS_IN_BYTE = [[tuple(index * 8 + bit + 1 for bit in range(8) if value & (0x80 >> bit)) for value in range(256)]
                   for index in range(16)]


class Unsupported(ValueError):
    """The spec uses something this codec does not compile; pyiso8583 handles that profile alone."""


class Codec:
    """Encode/decode for one spec. Both methods return None to mean "ask pyiso8583"."""

    def __init__(self, spec: Mapping[str, Mapping[str, Any]]) -> None:
        if spec["h"]["max_len"] != 0:
            raise Unsupported("a message header")
        self._encode_type, self._decode_type = _type_codec(spec["t"])
        self._bitmap_to_wire, self._bitmap_from_wire, self._bitmap_size = _bitmap_codec(spec["p"], spec["1"])
        # key -> (number, key, bit in a 128-bit bitmap, encoder)
        self._fields: dict[str, tuple[int, str, int, FieldEncoder]] = {}
        self._decoders: dict[int, tuple[str, FieldDecoder]] = {}
        for key, field_spec in spec.items():
            if not key.isdigit() or key in ("1", "65") or not 2 <= int(key) <= 128:
                continue
            self._fields[key] = (int(key), key, 1 << (128 - int(key)), _field_encoder(field_spec))
            self._decoders[int(key)] = (key, _field_decoder(field_spec))

    # ----- encode ------------------------------------------------------------------------------------

    def encode(self, message: Mapping[str, Any]) -> bytes | None:
        try:
            return self._encode(message)
        except Exception:  # noqa: BLE001 - any surprise goes to the reference codec, which names it
            return None

    def _encode(self, message: Mapping[str, Any]) -> bytes | None:
        fields = self._fields
        present = []
        for key in message:
            entry = fields.get(key)
            if entry is not None:
                present.append(entry)
            elif key not in _SKIPPED_KEYS and key.isnumeric():
                return None                                  # a field the spec lacks, or out of range
        present.sort()                                       # by field number
        bitmap = 0
        parts = [b"", b""]
        for _, key, bit, encoder in present:
            bitmap |= bit
            parts.append(encoder(message[key]))
        secondary = bitmap & _FIELDS_65_TO_128
        if secondary:
            bitmap |= _FIELD_1                               # a secondary bitmap follows
        parts[0] = self._encode_type(message["t"])
        parts[1] = self._bitmap_to_wire(bitmap, 16 if secondary else 8)
        return b"".join(parts)

    # ----- decode ------------------------------------------------------------------------------------

    def decode(self, data: bytes) -> dict[str, str] | None:
        """The message without its bitmaps (as switch.iso.messages.decode returns it), or None."""
        if not isinstance(data, (bytes, bytearray)):
            return None
        try:
            return self._decode(bytes(data))
        except Exception:  # noqa: BLE001 - the reference codec raises the precise DecodeError
            return None

    def _decode(self, data: bytes) -> dict[str, str] | None:
        mti, offset = self._decode_type(data, 0)
        message = {"t": mti}
        bitmap, offset = self._bitmap_from_wire(data, offset)
        numbers = self._fields_on(bitmap)
        if numbers and numbers[0] == 1:
            secondary, offset = self._bitmap_from_wire(data, offset)
            numbers = numbers[1:] + [64 + n for n in self._fields_on(secondary)]
            if 65 in numbers:
                return None                                  # a tertiary bitmap: the reference handles it
        decoders = self._decoders
        for number in numbers:
            key, decoder = decoders[number]
            message[key], offset = decoder(data, offset)
        if offset != len(data):
            return None
        return message

    def _fields_on(self, bitmap: bytes) -> list[int]:
        numbers: list[int] = []
        table = _FIELDS_IN_BYTE
        for index, value in enumerate(bitmap):
            if value:
                numbers.extend(table[index][value])
        return numbers


def compile_codec(spec: Mapping[str, Mapping[str, Any]]) -> Codec | None:
    """A Codec for `spec`, or None when the spec needs pyiso8583's general code."""
    try:
        return Codec(spec)
    except Unsupported:
        return None


# ----- message type and bitmaps --------------------------------------------------------------------------


def _type_codec(spec: Mapping[str, Any]) -> tuple[Callable[[str], bytes], FieldDecoder]:
    if spec["data_enc"] == "b":
        def encode_binary(mti: str) -> bytes:
            raw = binascii.a2b_hex(mti)
            if len(raw) != 2:
                raise ValueError("MTI length")
            return raw

        def decode_binary(data: bytes, offset: int) -> tuple[str, int]:
            raw = data[offset : offset + 2]
            if len(raw) != 2:
                raise ValueError("short MTI")
            return raw.hex().upper(), offset + 2

        return encode_binary, decode_binary
    encoding = _text_encoding(spec["data_enc"])

    def encode_text(mti: str) -> bytes:
        raw = mti.encode(encoding)
        if len(raw) != 4:
            raise ValueError("MTI length")
        return raw

    def decode_text(data: bytes, offset: int) -> tuple[str, int]:
        raw = data[offset : offset + 4]
        if len(raw) != 4:
            raise ValueError("short MTI")
        return raw.decode(encoding), offset + 4

    return encode_text, decode_text


def _bitmap_codec(primary: Mapping[str, Any], secondary: Mapping[str, Any]) -> tuple[
        Callable[[int, int], bytes], Callable[[bytes, int], tuple[bytes, int]], int]:
    """(to_wire(bits, size), from_wire(data, offset) -> (8 raw bytes, offset), wire size of one bitmap)."""
    if primary["data_enc"] != secondary["data_enc"]:
        raise Unsupported("primary and secondary bitmaps encoded differently")
    if primary["data_enc"] == "b":
        def to_wire_binary(bits: int, size: int) -> bytes:
            return (bits >> (128 - 8 * size)).to_bytes(size, "big")

        def from_wire_binary(data: bytes, offset: int) -> tuple[bytes, int]:
            raw = data[offset : offset + 8]
            if len(raw) != 8:
                raise ValueError("short bitmap")
            return raw, offset + 8

        return to_wire_binary, from_wire_binary, 8
    encoding = _text_encoding(primary["data_enc"])

    def to_wire_text(bits: int, size: int) -> bytes:
        return (bits >> (128 - 8 * size)).to_bytes(size, "big").hex().upper().encode(encoding)

    def from_wire_text(data: bytes, offset: int) -> tuple[bytes, int]:
        raw = data[offset : offset + 16]
        if len(raw) != 16:
            raise ValueError("short bitmap")
        return bytes.fromhex(raw.decode(encoding)), offset + 16

    return to_wire_text, from_wire_text, 16


# ----- fields ----------------------------------------------------------------------------------------


def _text_encoding(name: str) -> str:
    if name in ("b", "bcd"):
        raise Unsupported(f"{name} is not a text encoding")
    return codecs.lookup(name).name


def _unit_size(spec: Mapping[str, Any]) -> Callable[[int], int]:
    """Field length in the spec's unit -> bytes on the wire."""
    if spec.get("len_count", "bytes") == "nibbles":
        return lambda count: (count + 1) // 2
    return lambda count: count


def _length_prefixes(spec: Mapping[str, Any]) -> list[bytes | None]:
    """The prefix pyiso8583 writes for each length 0..max_len; None where it would refuse (no room)."""
    len_enc, len_type = spec["len_enc"], spec["len_type"]
    prefixes: list[bytes | None] = []
    for count in range(spec["max_len"] + 1):
        if len_enc == "b":
            prefix = count.to_bytes(len_type, "big") if count < 256**len_type else None
        elif len_enc == "bcd":
            digits = f"{count:0{len_type * 2}d}"
            prefix = binascii.a2b_hex(digits) if len(digits) <= len_type * 2 else None
        else:
            prefix = f"{count:0{len_type}d}".encode(_text_encoding(len_enc))
            prefix = prefix if len(prefix) <= len_type else None
        prefixes.append(prefix)
    return prefixes


def _field_encoder(spec: Mapping[str, Any]) -> FieldEncoder:
    """value -> length prefix + data; raises on anything pyiso8583 would refuse (or might treat oddly)."""
    max_len = spec["max_len"]
    if spec["data_enc"] == "b":
        to_raw = _binary_encoder(spec)
    else:
        to_raw = _text_encoder(spec)
    if spec["len_type"] == 0:
        def fixed(value: str) -> bytes:
            raw, count = to_raw(value)
            if count != max_len:
                raise ValueError("fixed length")
            return raw

        return fixed
    prefixes = _length_prefixes(spec)

    def variable(value: str) -> bytes:
        raw, count = to_raw(value)
        prefix = prefixes[count]                   # IndexError over max_len, None where it cannot be written
        if prefix is None:
            raise ValueError("length does not fit")
        return prefix + raw

    return variable


def _text_encoder(spec: Mapping[str, Any]) -> Callable[[str], tuple[bytes, int]]:
    """value -> (encoded data, its length in the spec's unit)."""
    encoding = _text_encoding(spec["data_enc"])
    scale = 2 if spec.get("len_count", "bytes") == "nibbles" else 1

    def text(value: str) -> tuple[bytes, int]:
        if type(value) is not str:
            raise TypeError("not a str")
        raw = value.encode(encoding)
        return raw, len(raw) * scale

    return text


def _binary_encoder(spec: Mapping[str, Any]) -> Callable[[str], tuple[bytes, int]]:
    """Hex (or BCD digits) -> (bytes, length in the spec's unit), odd digit counts padded as configured."""
    nibbles = spec.get("len_count", "bytes") == "nibbles"
    left_pad, right_pad = spec.get("left_pad", "")[:1], spec.get("right_pad", "")[:1]

    def binary(value: str) -> tuple[bytes, int]:
        if type(value) is not str:
            raise TypeError("not a str")
        if not nibbles:
            raw = binascii.a2b_hex(value)
            return raw, len(raw)
        digits = value
        if len(value) & 1:
            digits = left_pad + value if left_pad else value + right_pad
        return binascii.a2b_hex(digits), len(value)

    return binary


def _field_decoder(spec: Mapping[str, Any]) -> FieldDecoder:
    """(data, offset) -> (value, offset after the field); raises on anything unusual."""
    size_of = _unit_size(spec)
    to_value = _binary_decoder(spec) if spec["data_enc"] == "b" else _text_decoder(spec)
    if spec["len_type"] == 0:
        count = spec["max_len"]
        size = size_of(count)

        def fixed(data: bytes, offset: int) -> tuple[str, int]:
            raw = data[offset : offset + size]
            if len(raw) != size:
                raise ValueError("short field")
            return to_value(raw, count), offset + size

        return fixed
    len_type = spec["len_type"]
    # Only the canonical prefixes pyiso8583 writes; odd ones (" 5", "+5") and lengths over the maximum
    # raise KeyError, so pyiso8583 decides.
    lengths = {prefix: count for count, prefix in enumerate(_length_prefixes(spec)) if prefix is not None}

    def variable(data: bytes, offset: int) -> tuple[str, int]:
        start = offset + len_type
        count = lengths[data[offset:start]]
        size = size_of(count)
        raw = data[start : start + size]
        if len(raw) != size:
            raise ValueError("short field")
        return to_value(raw, count), start + size

    return variable


def _text_decoder(spec: Mapping[str, Any]) -> Callable[[bytes, int], str]:
    encoding = _text_encoding(spec["data_enc"])
    return lambda raw, count: raw.decode(encoding)


def _binary_decoder(spec: Mapping[str, Any]) -> Callable[[bytes, int], str]:
    """(raw bytes, length in the spec's unit) -> upper-case hex, without the pad nibble of an odd length."""
    nibbles = spec.get("len_count", "bytes") == "nibbles"
    left_pad, right_pad = spec.get("left_pad", "")[:1], spec.get("right_pad", "")[:1]

    def binary(raw: bytes, count: int) -> str:
        digits = raw.hex().upper()
        if not (nibbles and count & 1):
            return digits
        if left_pad and digits[:1] == left_pad:
            return digits[1:]
        if right_pad and digits[-1:] == right_pad:
            return digits[:-1]
        raise ValueError("pad nibble")

    return binary
