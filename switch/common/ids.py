"""Object ids: a type prefix and 22 random base62 digits, 131 bits (Stripe-like, unguessable, URL-safe)."""

from __future__ import annotations

import hashlib
import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number: int, width: int = 22) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


# Random bytes -> base62 digits in one C call: bytes 0..247 map to ALPHABET[b % 62] (248 = 4 x 62, so
# uniformly), bytes 248..255 are dropped. 22 digits carry 131 bits.
_DIGIT_OF_BYTE = bytes(ord(_ALPHABET[b % 62]) for b in range(248)) + bytes(8)
_UNEVEN_BYTES = bytes(range(248, 256))
_ID_DIGITS = 22


def new_id(prefix: str) -> str:
    digits = b""
    while len(digits) < _ID_DIGITS:            # 32 bytes almost always suffice (P(fewer than 22 kept) < 1e-12)
        digits += secrets.token_bytes(32).translate(_DIGIT_OF_BYTE, _UNEVEN_BYTES)
    return f"{prefix}_{digits[:_ID_DIGITS].decode()}"


def new_secret_key(prefix: str) -> str:
    """An API key: a visible type prefix and 256 random bits in base62 (e.g. sk_test_..., pk_test_...)."""
    return prefix + base62(secrets.randbits(256), width=43)


def key_digest(key: str) -> bytes:
    """What is stored of a key: SHA-256 (a random 256-bit secret needs no salt or stretching)."""
    return hashlib.sha256(key.encode()).digest()
