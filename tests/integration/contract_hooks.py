"""Schemathesis hooks for the contract run (tests/integration/test_contract.py): a webhook endpoint URL the
fuzzer makes up points at the test's receiver on loopback (CONTRACT_WEBHOOK_PORT), so its deliveries never
leave the machine (not even as a DNS query), and succeed (no retries left behind for the tests after)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis

LOOPBACK = f"127.0.0.1:{os.environ.get('CONTRACT_WEBHOOK_PORT', '9')}"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str) and 8 <= len(body["url"]) <= 2048:
        try:
            parts = urlsplit(body["url"])
        except ValueError:
            return
        if parts.scheme in ("http", "https"):
            body["url"] = urlunsplit((parts.scheme, LOOPBACK, parts.path, parts.query, ""))
