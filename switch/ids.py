"""Object ids: a type prefix and 128 random bits in base62 (Stripe-like, unguessable, URL-safe)."""

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


def new_id(prefix: str) -> str:
    return f"{prefix}_{base62(secrets.randbits(128))}"


def new_secret_key(prefix: str) -> str:
    """An API key: a visible type prefix and 256 random bits in base62 (e.g. sk_test_..., pk_test_...)."""
    return prefix + base62(secrets.randbits(256), width=43)


def key_digest(key: str) -> bytes:
    """What is stored of a key: SHA-256 (a random 256-bit secret needs no salt or stretching)."""
    return hashlib.sha256(key.encode()).digest()
