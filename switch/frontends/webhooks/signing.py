"""Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed
with the secret's bytes (`whsec_<base64>`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not one
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes,
            previous_secret: str | None = None) -> list[tuple[str, str]]:
    """The three headers; during a secret's roll, signed with both secrets (space-separated, as the spec
    allows), so a receiver verifies with either while it switches."""
    signature = sign(secret, message_id, timestamp, body)
    if previous_secret:
        signature += " " + sign(previous_secret, message_id, timestamp, body)
    return [("webhook-id", message_id), ("webhook-timestamp", str(timestamp)), ("webhook-signature", signature)]
