"""Verifying the switch's webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the secret's bytes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

import msgspec

from switch_sdk.models import Event

TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The signature does not match, or the timestamp is too far from now."""


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = TOLERANCE_S,
           now: float | None = None) -> Event:
    """The event, when one of the signatures (two while a secret is rolled) is the secret's."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id, timestamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit():
        raise WebhookVerificationError("missing webhook-id or webhook-timestamp")
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance_s:
        raise WebhookVerificationError("the timestamp is too far from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body,
                                         hashlib.sha256).digest()).decode()
    for signature in lowered.get("webhook-signature", "").split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msgspec.json.decode(body, type=Event)
    raise WebhookVerificationError("no signature matches")
