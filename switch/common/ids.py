"""Object ids: a type prefix and 22 base62 digits (Stripe-like, URL-safe): the creation time in
milliseconds (7 digits, in order until the year 2081), then 15 random digits (89 bits: unguessable).

Time first, so ids sort by creation and a new row's id lands at the right edge of every index keyed by it
(the payments' primary key, their events, ledger postings, refunds, vault tokens). Random ids put each
insert on a page of its own: past shared_buffers every insert reads a page, and after every checkpoint
writes a full page image to the WAL, so the cost of a payment grew with the table (the soak's decay)."""

from __future__ import annotations

import hashlib
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number: int, width: int = 22) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


# Random bytes -> base62 digits in one C call: bytes 0..247 map to ALPHABET[b % 62] (248 = 4 x 62, so
# uniformly), bytes 248..255 are dropped. 15 digits carry 89 bits.
_DIGIT_OF_BYTE = bytes(ord(_ALPHABET[b % 62]) for b in range(248)) + bytes(8)
_UNEVEN_BYTES = bytes(range(248, 256))
_TIME_DIGITS = 7
_RANDOM_DIGITS = 15
_last_ms = [0, "0" * _TIME_DIGITS]     # the last millisecond and its digits: most ids share one with another


# An id as routes and commands take it: a 2-4 letter prefix, an underscore and 10-40 base62 characters.
OBJECT_ID = r"[a-z]{2,4}_[0-9A-Za-z]{10,40}"


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if ms != _last_ms[0]:
        _last_ms[:] = ms, base62(ms, width=_TIME_DIGITS)
    digits = b""
    while len(digits) < _RANDOM_DIGITS:        # 24 bytes almost always suffice (P(fewer than 15 kept) < 1e-6)
        digits += secrets.token_bytes(24).translate(_DIGIT_OF_BYTE, _UNEVEN_BYTES)
    return f"{prefix}_{_last_ms[1]}{digits[:_RANDOM_DIGITS].decode()}"


def new_secret_key(prefix: str) -> str:
    """An API key: a visible type prefix and 256 random bits in base62 (e.g. sk_test_..., pk_test_...)."""
    return prefix + base62(secrets.randbits(256), width=43)


def key_digest(key: str) -> bytes:
    """What is stored of a key: SHA-256 (a random 256-bit secret needs no salt or stretching)."""
    return hashlib.sha256(key.encode()).digest()
