"""The compiled codec (switch.iso.codec) against its reference, pyiso8583, on every profile.

Whenever the compiled codec gives an answer it must be pyiso8583's answer; when it gives None, the
caller asks pyiso8583. Generated messages mix valid values with over-long, odd, non-hex and
unencodable ones; decode inputs are valid encodings, then the same bytes mangled.
"""

from typing import Any

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.iso import PROFILES, IsoError, decode, encode
from switch.iso.codec import Codec, Unsupported, compile_codec

profiles = st.sampled_from(list(PROFILES.values()))
FIELD_KEYS = {name: sorted((k for k in p.spec if k.isdigit() and k not in ("1", "65")), key=int)
              for name, p in PROFILES.items()}


def reference_encode(spec: Any, message: dict[str, Any]) -> bytes | None:
    try:
        return bytes(iso8583.encode(dict(message), spec)[0])
    except (iso8583.EncodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def reference_decode(spec: Any, data: bytes) -> dict[str, str] | None:
    try:
        message, _ = iso8583.decode(data, spec)
    except (iso8583.DecodeError, KeyError, TypeError, ValueError):
        return None
    for key in ("p", "1", "h"):
        message.pop(key, None)
    return message


def value_for(draw: Any, field_spec: dict[str, Any], numeric: bool, valid: bool) -> str:
    """A value for one field: within its spec when `valid`, else anything near it."""
    max_len = field_spec["max_len"]
    fixed = field_spec["len_type"] == 0
    if fixed and valid:
        size = max_len
    elif valid:
        size = draw(st.one_of(st.integers(0, max_len), st.just(max_len)))
    else:
        size = draw(st.one_of(st.integers(0, max_len + 2), st.sampled_from([max_len, max_len + 1])))
    if field_spec["data_enc"] == "b" and field_spec["len_count"] == "bytes":     # raw bytes, as hex
        value = draw(st.binary(min_size=size, max_size=size)).hex().upper()
        if valid:
            return value
        return draw(st.sampled_from([value, value[1:], value + "G", value.lower()]))
    if valid:
        alphabet = "0123456789" if numeric else st.characters(min_codepoint=0x20, max_codepoint=0x7E)
        return draw(st.text(alphabet=alphabet, min_size=size, max_size=size))
    if numeric:
        return draw(st.text(alphabet="0123456789ABCDEF", min_size=size, max_size=size))
    return draw(st.text(min_size=size, max_size=size))       # any character, encodable or not


@st.composite
def messages(draw: Any, profile: Any, valid: bool) -> dict[str, Any]:
    mti = draw(st.sampled_from(["0100", "0110", "0200", "0420", "0810"]))
    message: dict[str, Any] = {"t": mti}
    for key in draw(st.lists(st.sampled_from(FIELD_KEYS[profile.name]), max_size=12, unique=True)):
        message[key] = value_for(draw, profile.spec[key], key in profile.numeric_fields, valid)
    if not valid and draw(st.booleans()):
        message[draw(st.sampled_from(["129", "0", "02", "65", "1", "p", "x"]))] = draw(
            st.sampled_from(["", "1", "0000000000000000", 5]))
    return message


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=profiles, valid=st.booleans())
def test_encode_agrees_with_pyiso8583(data, profile, valid):
    message = data.draw(messages(profile, valid))
    compiled = profile.codec.encode(message)
    reference = reference_encode(profile.spec, message)
    if compiled is not None:
        assert compiled == reference
    if valid:
        assert compiled is not None and reference is not None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=profiles)
def test_decode_agrees_with_pyiso8583_on_valid_messages(data, profile):
    message = data.draw(messages(profile, valid=True))
    wire = reference_encode(profile.spec, message)
    assert wire is not None
    decoded = profile.codec.decode(wire)
    assert decoded is not None
    assert decoded == reference_decode(profile.spec, wire) == message


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=profiles)
def test_decode_agrees_with_pyiso8583_on_mangled_input(data, profile):
    wire = bytearray(reference_encode(profile.spec, data.draw(messages(profile, valid=True))) or b"")
    for _ in range(data.draw(st.integers(1, 3))):
        cut = data.draw(st.integers(0, len(wire)))
        action = data.draw(st.sampled_from(["flip", "truncate", "extend", "insert"]))
        if action == "flip" and cut < len(wire):
            wire[cut] ^= data.draw(st.integers(1, 255))
        elif action == "truncate":
            del wire[cut:]
        elif action == "extend":
            wire += data.draw(st.binary(min_size=1, max_size=4))
        elif action == "insert":
            wire[cut:cut] = data.draw(st.binary(min_size=1, max_size=3))
    compiled = profile.codec.decode(bytes(wire))
    if compiled is not None:
        assert compiled == reference_decode(profile.spec, bytes(wire))


@settings(max_examples=300)
@given(profile=profiles, wire=st.binary(max_size=80))
def test_decode_agrees_with_pyiso8583_on_random_bytes(profile, wire):
    compiled = profile.codec.decode(wire)
    if compiled is not None:
        assert compiled == reference_decode(profile.spec, wire)


def test_secondary_bitmap_fields_use_the_compiled_path():
    for profile in PROFILES.values():
        message = {"t": "0420", "11": "000123", "90": "0" * 42, "95": "X" * 42, "128": "AB" * 8}
        wire = profile.codec.encode(message)
        assert wire is not None and wire == reference_encode(profile.spec, message)
        assert profile.codec.decode(wire) == message


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_errors_still_come_from_the_reference_codec(profile):
    with pytest.raises(IsoError, match="field 41"):
        encode(profile, {"t": "0100", "41": "TOO LONG FOR EIGHT"})
    good = encode(profile, {"t": "0100", "11": "000001"})
    with pytest.raises(IsoError, match="Extra data"):
        decode(profile, good + b"\x00")
    with pytest.raises(IsoError):
        decode(profile, good[:-1])


def test_specs_it_cannot_compile_are_left_to_pyiso8583():
    spec = dict(PROFILES["generic"].spec)
    spec["h"] = {**spec["h"], "max_len": 4}
    assert compile_codec(spec) is None
    with pytest.raises(Unsupported):
        Codec(spec)


def test_a_tertiary_bitmap_is_left_to_the_reference():
    profile = PROFILES["generic"]
    message = {"t": "0100", "11": "000001"}
    wire = bytearray(encode(profile, message))
    wire[4] |= 0x80                       # field 1: secondary bitmap
    secondary = bytearray(8)
    secondary[0] = 0x80                   # field 65: tertiary bitmap
    tampered = bytes(wire[:12]) + bytes(secondary) + bytes(8) + bytes(wire[12:])
    assert profile.codec.decode(tampered) is None


def variable_fields() -> list[tuple[Any, str]]:
    return [(p, key) for p in PROFILES.values() for key in FIELD_KEYS[p.name] if p.spec[key]["len_type"]]


def longest_value(profile: Any, key: str, size: int) -> str:
    field_spec = profile.spec[key]
    if field_spec["data_enc"] == "b" and field_spec["len_count"] == "bytes":
        return "AB" * size
    return "7" * size


@pytest.mark.parametrize(("profile", "key"), variable_fields(), ids=lambda v: getattr(v, "name", v))
def test_variable_length_bounds_match_the_reference(profile, key):
    max_len = profile.spec[key]["max_len"]
    at_max = {"t": "0100", key: longest_value(profile, key, max_len)}
    assert profile.codec.encode(at_max) == reference_encode(profile.spec, at_max) is not None
    over = {"t": "0100", key: longest_value(profile, key, max_len + 1)}
    assert profile.codec.encode(over) is None and reference_encode(profile.spec, over) is None
    # A length prefix one over the maximum, written with a spec that allows it: both refuse to read it.
    # (Unless the prefix has no room for it, as with 999 in three digits.)
    roomy = {**profile.spec, key: {**profile.spec[key], "max_len": max_len + 1}}
    wire = reference_encode(roomy, over)
    if wire is None:
        assert len(str(max_len + 1)) > len(str(max_len))
        return
    assert profile.codec.decode(wire) is None and reference_decode(profile.spec, wire) is None


def test_an_odd_bcd_length_needs_its_pad_nibble():
    profile = PROFILES["visa"]                            # BCD numerics, left-padded with 0
    wire = bytearray(profile.codec.encode({"t": "0100", "2": "424242424242424"}))   # 15 digits
    assert profile.codec.decode(bytes(wire)) == {"t": "0100", "2": "424242424242424"}
    pan_start = 2 + 8 + 1                                 # MTI, bitmap, one-byte BCD length
    wire[pan_start] |= 0x50                               # the pad nibble is no longer 0
    assert profile.codec.decode(bytes(wire)) is None
    assert reference_decode(profile.spec, bytes(wire)) is None
