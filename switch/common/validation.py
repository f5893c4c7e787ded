"""msgspec validation errors as API errors: the field path becomes Stripe's ``param``."""

from __future__ import annotations

import re

import msgspec

_PATH = re.compile(r"at `\$\.?([^`]*)`")


def error_param(error: msgspec.ValidationError) -> str | None:
    """`Expected int, got str - at $.payment_method.card.exp_month` -> payment_method[card][exp_month]."""
    match = _PATH.search(str(error))
    if not match or not match.group(1):
        return None
    parts = re.split(r"\.|\[|\]", match.group(1))
    parts = [part for part in parts if part]
    return parts[0] + "".join(f"[{part}]" for part in parts[1:])


def error_message(error: msgspec.ValidationError) -> str:
    """msgspec's message without its path suffix (the path goes to ``param``)."""
    return str(error).split(" - at `", 1)[0].rstrip(".") + "."
