"""Every error code the switch can answer is listed in docs/errors.md (and a code listed there exists)."""

from __future__ import annotations

import re
from pathlib import Path

from switch.payments.results import MEANINGS

ROOT = Path(__file__).resolve().parents[2]
# Front-end errors are raised with their code as a literal: invalid_request("code", ...), and the like.
LITERAL_CODES = re.compile(r"""(?:invalid_request|service_unavailable)\(\s*"([a-z_]+)"|"""
                           r"""(?:_reject|_refuse|error_body)\(\d+, "([a-z_]+)"|"""
                           r"""ApiError\(\d+, "[a-z_]+", "([a-z_]+)\"""")


def codes_in_code() -> set[str]:
    codes = {m.code for m in MEANINGS.values() if m.type} | {m.decline_code for m in MEANINGS.values()
                                                            if m.decline_code}
    for path in (ROOT / "switch").rglob("*.py"):
        for match in LITERAL_CODES.finditer(path.read_text()):
            codes.add(next(group for group in match.groups() if group))
    codes.add("request_too_large")               # HttpProtocol._too_large
    codes.add("invalid_api_key")                 # errors.authentication_error
    return codes


def test_every_error_code_is_documented() -> None:
    documented = set(re.findall(r"\b[a-z_]+\b", (ROOT / "docs" / "errors.md").read_text()))
    missing = codes_in_code() - documented
    assert not missing, f"not in docs/errors.md: {sorted(missing)}"


def test_the_scan_finds_the_front_end_codes() -> None:
    found = codes_in_code()
    assert {"duplicate_header", "malformed_http", "internal_error", "idempotency_key_missing",
            "not_found", "database_unavailable", "card_declined", "insufficient_funds"} <= found
