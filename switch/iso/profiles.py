"""ISO 8583 network profiles: each network's field table, kept as data.

A profile is everything the byte layer needs to know about one network: the pyiso8583 spec dict, how
frames are length-prefixed on the wire and whether messages carry a MAC. Profiles are checked once at
import, so a typo in a field table fails at start-up rather than on the first payment.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from switch.iso.codec import Codec, compile_codec

FramingKind = Literal["binary", "ascii"]

# Keys pyiso8583 reads from every field spec; "len_count" and the pads are optional there but we
# always set len_count so a field's unit is never implicit.
_FIELD_KEYS_REQUIRED = frozenset({"data_enc", "len_enc", "len_type", "max_len", "len_count", "desc"})
_LEN_COUNTS = frozenset({"bytes", "nibbles"})

# Fields every profile must describe: what 0100/0200/0220/0400/0420 and their answers and 0800/0810 use.
FIELDS_REQUIRED = (
    "h", "t", "p", "1",
    "2", "3", "4", "7", "11", "12", "13", "14", "18", "22", "25", "32", "37", "38", "39",
    "41", "42", "43", "48", "49", "64", "70", "90", "95", "128",
)  # fmt: skip

# Field descriptions, and the ISO 8583:1987 attribute of each: (kind, length type, max length).
# kind: "n" numeric, "an"/"ans" text, "b" binary (max length in bytes).
_FIELD_TABLE: dict[str, tuple[str, str, int, int]] = {
    # key: (description, kind, len_type, max_len)
    "2": ("Primary account number (PAN)", "n", 2, 19),
    "3": ("Processing code", "n", 0, 6),
    "4": ("Amount, transaction (minor units)", "n", 0, 12),
    "7": ("Transmission date and time MMDDhhmmss", "n", 0, 10),
    "11": ("System trace audit number (STAN)", "n", 0, 6),
    "12": ("Time, local transaction hhmmss", "n", 0, 6),
    "13": ("Date, local transaction MMDD", "n", 0, 4),
    "14": ("Date, expiration YYMM", "n", 0, 4),
    "18": ("Merchant category code", "n", 0, 4),
    "22": ("POS entry mode", "n", 0, 3),
    "25": ("POS condition code", "n", 0, 2),
    "32": ("Acquiring institution id", "n", 2, 11),
    "37": ("Retrieval reference number (RRN)", "an", 0, 12),
    "38": ("Authorization id response", "an", 0, 6),
    "39": ("Response code", "an", 0, 2),
    "41": ("Card acceptor terminal id", "ans", 0, 8),
    "42": ("Card acceptor id code", "ans", 0, 15),
    "43": ("Card acceptor name/location", "ans", 0, 40),
    "48": ("Additional data, private", "ans", 3, 999),
    "49": ("Currency code, transaction", "n", 0, 3),
    "64": ("Message authentication code (MAC)", "b", 0, 8),
    "70": ("Network management information code", "n", 0, 3),
    "90": ("Original data elements", "n", 0, 42),
    "95": ("Replacement amounts", "an", 0, 42),
    "128": ("Message authentication code (MAC)", "b", 0, 8),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """One network's wire format. `spec` is read-only; pyiso8583 reads it, and `codec` is compiled from it."""

    name: str
    spec: MappingProxyType[str, Any]
    framing_kind: FramingKind
    framing_header_size: int  # bytes for "binary", decimal digits for "ascii"
    mac: bool
    numeric_fields: frozenset[str] = field(default=frozenset())
    # The spec compiled once (switch.iso.codec); None when only pyiso8583 can handle it.
    codec: Codec | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_profile(self)
        object.__setattr__(self, "codec", compile_codec(self.spec))


def _numeric(len_type: int, max_len: int, bcd: bool) -> dict[str, Any]:
    if not bcd:
        return {
            "data_enc": "ascii",
            "len_enc": "ascii",
            "len_type": len_type,
            "max_len": max_len,
            "len_count": "bytes",
        }
    # BCD: two digits a byte; odd lengths are padded with a leading zero nibble, the usual convention.
    # A BCD length prefix takes ceil(len_type / 2) bytes (LL -> 1 byte, LLL -> 2 bytes).
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": (len_type + 1) // 2,
        "max_len": max_len,
        "len_count": "nibbles",
        "left_pad": "0",
    }


def _text(len_type: int, max_len: int, encoding: str, bcd_len: bool) -> dict[str, Any]:
    if bcd_len:
        return {
            "data_enc": encoding,
            "len_enc": "bcd",
            "len_type": (len_type + 1) // 2,
            "max_len": max_len,
            "len_count": "bytes",
        }
    return {
        "data_enc": encoding,
        "len_enc": "ascii",
        "len_type": len_type,
        "max_len": max_len,
        "len_count": "bytes",
    }


def _binary(len_type: int, max_len: int) -> dict[str, Any]:
    return {"data_enc": "b", "len_enc": "b", "len_type": len_type, "max_len": max_len, "len_count": "bytes"}


def build_spec(*, bcd: bool, text_encoding: str, bitmap_binary: bool, mti_bcd: bool) -> dict[str, Any]:
    """Build a pyiso8583 spec dict from the 1987 field table and a network's encoding choices."""
    spec: dict[str, Any] = {
        "h": {
            "desc": "Message header",
            "data_enc": "ascii",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 0,
            "len_count": "bytes",
        },
        "t": {
            "desc": "Message type indicator",
            "data_enc": "b" if mti_bcd else "ascii",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 2 if mti_bcd else 4,
            "len_count": "bytes",
        },
    }
    for key, desc in (("p", "Bitmap, primary"), ("1", "Bitmap, secondary")):
        if bitmap_binary:
            spec[key] = {"desc": desc, **_binary(0, 8)}
        else:
            spec[key] = {"desc": desc, **_text(0, 16, "ascii", False)}
    for key, (desc, kind, len_type, max_len) in _FIELD_TABLE.items():
        if kind == "n":
            body = _numeric(len_type, max_len, bcd)
        elif kind == "b":
            body = _binary(len_type, max_len)
        else:
            body = _text(len_type, max_len, text_encoding, bcd)
        spec[key] = {"desc": desc, **body}
    return spec


def check_profile(profile: Profile) -> None:
    """Assert a profile is complete and self-consistent. These are programmer errors, hence asserts."""
    spec = profile.spec
    assert profile.name, "profile needs a name"
    assert profile.framing_kind in ("binary", "ascii"), profile.framing_kind
    if profile.framing_kind == "binary":
        assert profile.framing_header_size in (2, 4), profile.framing_header_size
    else:
        assert 2 <= profile.framing_header_size <= 6, profile.framing_header_size
    missing = [key for key in FIELDS_REQUIRED if key not in spec]
    assert not missing, f"profile {profile.name} lacks fields {missing}"
    for key, field_spec in spec.items():
        where = f"profile {profile.name} field {key}"
        keys_missing = _FIELD_KEYS_REQUIRED - field_spec.keys()
        assert not keys_missing, f"{where} lacks {sorted(keys_missing)}"
        assert field_spec["len_count"] in _LEN_COUNTS, where
        assert isinstance(field_spec["max_len"], int) and field_spec["max_len"] >= 0, where
        assert field_spec["len_type"] in (0, 1, 2, 3, 4), where
        for enc_key in ("data_enc", "len_enc"):
            enc = field_spec[enc_key]
            if enc not in ("b", "bcd"):
                codecs.lookup(enc)  # Raises LookupError on an unknown codec name.
        if field_spec["data_enc"] == "b" and field_spec["len_count"] == "nibbles":
            pad = field_spec.get("left_pad") or field_spec.get("right_pad")
            assert pad, f"{where}: BCD needs a pad nibble for odd lengths"
        if field_spec["len_type"] and field_spec["len_enc"] == "bcd":
            assert field_spec["max_len"] < 10 ** (2 * field_spec["len_type"]), where
        elif field_spec["len_type"]:
            assert field_spec["max_len"] < 10 ** field_spec["len_type"] or field_spec["len_enc"] == "b", where
    if profile.mac:
        # switch.iso.mac relies on the MAC field being the last field and exactly 8 raw bytes.
        for key in ("64", "128"):
            mac_spec = spec[key]
            assert (mac_spec["data_enc"], mac_spec["len_type"], mac_spec["max_len"]) == ("b", 0, 8), key


def _profile(
    name: str, framing_kind: FramingKind, framing_header_size: int, mac: bool, **spec_options: Any
) -> Profile:
    spec = build_spec(**spec_options)
    numeric = frozenset(key for key, row in _FIELD_TABLE.items() if row[1] == "n")
    return Profile(name, MappingProxyType(spec), framing_kind, framing_header_size, mac, numeric)


# Plain ISO 8583:1987 as most host-to-host links speak it: ASCII numerics and lengths, binary bitmaps,
# ASCII MTI, a 2-byte big-endian binary length header.
GENERIC = _profile(
    "generic", "binary", 2, False, bcd=False, text_encoding="ascii", bitmap_binary=True, mti_bcd=False
)

# Visa-like (BASE I style): BCD MTI, numerics and lengths, binary bitmaps, EBCDIC (cp500) text,
# 2-byte binary length header, AES-CMAC in field 64 / 128 (switch.iso.mac).
VISA = _profile("visa", "binary", 2, True, bcd=True, text_encoding="cp500", bitmap_binary=True, mti_bcd=True)

# Mastercard-like: ASCII everywhere including a hex-ASCII bitmap, and a 4-digit ASCII decimal length;
# AES-CMAC in field 64 / 128.
MASTERCARD = _profile(
    "mastercard", "ascii", 4, True, bcd=False, text_encoding="ascii", bitmap_binary=False, mti_bcd=False
)

PROFILES: MappingProxyType[str, Profile] = MappingProxyType({p.name: p for p in (GENERIC, VISA, MASTERCARD)})


def profile_for(name: str) -> Profile:
    """Return the profile called `name`; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown network profile {name!r}; known: {sorted(PROFILES)}") from None
