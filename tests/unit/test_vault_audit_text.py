"""Audit rows hold what Postgres can store: a NUL or a control character in a caller's text is escaped,
so one bad row can never stall the audit log (which would fail every detokenize closed)."""

from __future__ import annotations

from vault.service import _storable


def test_printable_text_is_kept_as_given() -> None:
    assert _storable("switch") == "switch" and _storable("Café №1") == "Café №1" and _storable(None) is None


def test_nul_and_control_characters_are_escaped() -> None:
    assert _storable("tok_\x00x") == "tok_\\x00x"
    assert _storable("a\r\nb\x1b") == "a\\r\\nb\\x1b"
    assert "\x00" not in _storable("\ud800\x00")        # a lone surrogate as well
