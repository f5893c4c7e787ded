"""Message authentication codes: AES-CMAC (NIST SP 800-38B) over ISO 8583 messages. Pure functions.

Where the MAC goes: field 64 when the message has no secondary bitmap, field 128 when it has one (any
field 65..127 present). Either way the MAC field is the last field of the message and 8 bytes long, so
the MAC is computed over the encoded message up to the MAC field (MTI, bitmaps with the MAC bit set, every
other field) and fills the last 8 bytes: the first 8 bytes (64 bits) of the 16-byte CMAC, the truncation
SP 800-38B allows for Tlen = 64.

Keys: each network (zone) has a MAC master key; the switch's copy lives in the HSM and only the vault
uses it. A MAC session key is derived from it once per sign-on with the SP 800-108 KDF in counter mode,
AES-CMAC as the PRF, one 128-bit block:

    K_session = CMAC(K_master, [1]_4 || "ISO8583-MAC-SESSION" || 0x00 || network || 0x00 || [generation]_8 || [128]_4)

The key generation travels in the sign-on (0800, field 70 = 001) in field 48, tag "KG" (decimal), so the far
end derives the same key. Each link picks a fresh, increasing generation at every sign-on, which rotates
its session key; messages on that connection are signed and verified with it in software.

Nothing here logs or raises with key bytes or message data in the text.
"""

from __future__ import annotations

import hmac
import json
import re
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from switch.iso.messages import IsoError, encode, field48_decode, field48_encode
from switch.iso.profiles import Profile

MAC_BYTES = 8
SESSION_KEY_BYTES = 16  # AES-128: one CMAC block of KDF output.
MASTER_KEY_BYTES = 32  # AES-256 master keys; 16 and 24 bytes are accepted too.
AES_KEY_SIZES = frozenset({16, 24, 32})
GENERATION_MAX = 10**12 - 1  # Fits field 48 comfortably and 8 bytes of KDF context.
FIELD48_TAG_KEY_GENERATION = "KG"
NETWORK_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")

KDF_LABEL = b"ISO8583-MAC-SESSION"
MAC_FIELD_PRIMARY = "64"
MAC_FIELD_SECONDARY = "128"
_SECONDARY_DATA_FIELDS = frozenset(str(number) for number in range(65, 128))


class MacKeyError(ValueError):
    """A MAC key, key file or key generation is malformed. The text never carries key bytes."""


# ----- CMAC ------------------------------------------------------------------------------------------


# A CMAC state keyed once per key and copied per message: making one (the AES key schedule, the subkeys)
# took 1.2 µs a message where a copy takes 0.35, and every message is signed at one end and verified at the
# other. Keys change at each sign-on; the states of old ones go when the table is full.
_KEYED_MAX = 64
_keyed: dict[bytes, CMAC] = {}


def cmac_full(key: bytes, data: bytes) -> bytes:
    """The whole 16-byte AES-CMAC of `data` (RFC 4493 / SP 800-38B)."""
    keyed = _keyed.get(key)
    if keyed is None:
        if len(_keyed) >= _KEYED_MAX:
            _keyed.clear()
        keyed = _keyed[key] = CMAC(algorithms.AES(key))
    mac = keyed.copy()
    mac.update(data)
    return mac.finalize()


def cmac(key: bytes, data: bytes) -> bytes:
    """The 8-byte MAC for field 64 / 128: the first 64 bits of the AES-CMAC."""
    return cmac_full(key, data)[:MAC_BYTES]


# ----- messages --------------------------------------------------------------------------------------


def mac_field_for(message: dict[str, Any]) -> str:
    """ "128" when the message will carry a secondary bitmap (a field 65..127 is present), else "64"."""
    for key in message:
        if key in _SECONDARY_DATA_FIELDS:
            return MAC_FIELD_SECONDARY
    return MAC_FIELD_PRIMARY


def sign(profile: Profile, message: dict[str, Any], key: bytes) -> bytes:
    """Encode `message` for `profile` with its MAC in field 64 or 128; returns the wire bytes (no frame).

    Any MAC field already in `message` is replaced. Raises IsoError if the message cannot be encoded.
    """
    field = mac_field_for(message)
    if MAC_FIELD_PRIMARY in message or MAC_FIELD_SECONDARY in message:
        message = {name: value for name, value in message.items()
                   if name not in (MAC_FIELD_PRIMARY, MAC_FIELD_SECONDARY)}
    # Encode without the MAC, then set its bit and append it: the MAC field is the last one and 8 raw bytes
    # (profiles.check_profile), and its bitmap is already there (field 128 only goes with a secondary one).
    # Cheaper than encoding a placeholder field through the codec.
    encoded = bytearray(encode(profile, message))
    _set_mac_bit(profile, encoded, field)
    body = bytes(encoded)
    return body + cmac(key, body)


def _set_mac_bit(profile: Profile, data: bytearray, field: str) -> None:
    spec = profile.spec
    offset = spec["h"]["max_len"] + spec["t"]["max_len"]
    if field == MAC_FIELD_SECONDARY:
        offset += _bitmap_size(profile)
    if profile.spec["p"]["data_enc"] == "b":
        data[offset + 7] |= 0x01
        return
    # A hex-ASCII bitmap: the last bit is in the last hex digit.
    last_digit = int(chr(data[offset + 15]), 16) | 0x01
    data[offset + 15] = ord(f"{last_digit:X}")


def verify(profile: Profile, data: bytes, key: bytes) -> bool:
    """True when `data` (one encoded message, no frame header) carries a MAC in the right field that
    matches. A missing MAC, a MAC in the wrong field or a malformed bitmap is False. Constant-time compare.
    """
    if mac_field_present(profile, data) is None:
        return False
    body, received = data[:-MAC_BYTES], data[-MAC_BYTES:]
    return hmac.compare_digest(cmac(key, body), received)


def mac_field_present(profile: Profile, data: bytes) -> str | None:
    """ "64" or "128" when the bitmaps of `data` say the MAC field is where it belongs, else None.

    Read from the raw bitmaps, without decoding the message: field 64 with no secondary bitmap, or field
    128 (and not 64) with one.
    """
    spec = profile.spec
    offset = spec["h"]["max_len"] + spec["t"]["max_len"]
    primary = _bitmap_at(profile, data, offset)
    if primary is None:
        return None
    if not primary[0] & 0x80:
        return MAC_FIELD_PRIMARY if primary[7] & 0x01 else None
    secondary = _bitmap_at(profile, data, offset + _bitmap_size(profile))
    if secondary is None or primary[7] & 0x01 or not secondary[7] & 0x01:
        return None
    return MAC_FIELD_SECONDARY


def _bitmap_size(profile: Profile) -> int:
    return 8 if profile.spec["p"]["data_enc"] == "b" else 16


def _bitmap_at(profile: Profile, data: bytes, offset: int) -> bytes | None:
    size = _bitmap_size(profile)
    # The bitmap, at least one more field and the MAC must follow.
    if len(data) < offset + size + MAC_BYTES:
        return None
    raw = data[offset : offset + size]
    if size == 8:
        return raw
    try:
        return bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


# ----- session keys ----------------------------------------------------------------------------------


def check_network_name(network: str) -> None:
    if not NETWORK_NAME_PATTERN.match(network):
        raise MacKeyError("network name must be 1..32 of a-z, 0-9, '_' or '-'")


def check_generation(generation: int) -> None:
    if type(generation) is not int or not 0 < generation <= GENERATION_MAX:
        raise MacKeyError(f"key generation must be an integer in 1..{GENERATION_MAX}")


def kdf_input(network: str, generation: int) -> bytes:
    """The one-block SP 800-108 counter-mode input for (network, generation): what the PRF is applied to."""
    check_network_name(network)
    check_generation(generation)
    context = network.encode("ascii") + b"\x00" + generation.to_bytes(8, "big")
    return (1).to_bytes(4, "big") + KDF_LABEL + b"\x00" + context + (SESSION_KEY_BYTES * 8).to_bytes(4, "big")


def derive_session_key(master_key: bytes, network: str, generation: int) -> bytes:
    """The session key in software, as the far end (the simulator) computes it. The switch never holds a
    master key: the vault computes the same CMAC inside the HSM."""
    if len(master_key) not in AES_KEY_SIZES:
        raise MacKeyError("a MAC master key is 16, 24 or 32 bytes")
    return cmac_full(master_key, kdf_input(network, generation))


def with_generation(message: dict[str, Any], generation: int) -> dict[str, Any]:
    """A copy of a sign-on request carrying the key generation in field 48 (tag KG)."""
    check_generation(generation)
    tags = field48_decode(message["48"]) if "48" in message else {}
    tags[FIELD48_TAG_KEY_GENERATION] = str(generation)
    return {**message, "48": field48_encode(tags)}


def generation_of(message: dict[str, Any]) -> int | None:
    """The key generation a sign-on carries, or None when it has none or it is malformed."""
    try:
        value = field48_decode(message.get("48", "")).get(FIELD48_TAG_KEY_GENERATION)
    except IsoError:
        return None
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 12:
        return None
    generation = int(value)
    return generation if 0 < generation <= GENERATION_MAX else None


# ----- master key files (the far end's copy, and the vault's import) ---------------------------------


def format_master_keys(keys: dict[str, bytes]) -> str:
    """A key file: a JSON object of network name -> hex key. Written mode 0600 by its owner."""
    for network, key in keys.items():
        check_network_name(network)
        if len(key) not in AES_KEY_SIZES:
            raise MacKeyError(f"MAC master key for {network} must be 16, 24 or 32 bytes")
    return json.dumps({network: key.hex() for network, key in sorted(keys.items())}) + "\n"


def parse_master_keys(text: str) -> MappingProxyType[str, bytes]:
    """Read a key file written by `format_master_keys`. Errors name the network, never the key."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise MacKeyError("MAC master key file is not JSON") from None
    if not isinstance(raw, dict):
        raise MacKeyError("MAC master key file must hold a JSON object")
    keys: dict[str, bytes] = {}
    for network, value in raw.items():
        check_network_name(network)
        try:
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            key = b""
        if len(key) not in AES_KEY_SIZES:
            raise MacKeyError(f"MAC master key for {network} must be 32, 48 or 64 hex digits")
        keys[network] = key
    return MappingProxyType(keys)
