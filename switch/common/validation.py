"""msgspec validation errors as API errors: the field path becomes Stripe's ``param``."""

from __future__ import annotations

import re

import msgspec

# A pattern that must not take a trailing newline ends (?!\n)$: Python's $ also matches just before a final
# "\n", so "usd\n" or "a@b.co\n" would pass (and an email so sent would miss the fraud lists). \Z would do
# in Python, but the patterns are also the OpenAPI description's, read as ECMA-262 regexes, which have none.
NO_FINAL_NEWLINE = "(?!\\n)"
NO_FINAL_NEWLINE_SHOWN = NO_FINAL_NEWLINE.encode("unicode_escape").decode()   # as msgspec's messages print it
# Text Postgres can store: no NUL (\u0000), which a text column refuses.
STORABLE_TEXT = r"^[^\x00]*$"
# What the card networks carry as a merchant name on the statement (field 43): printable ASCII, without
# the characters Stripe refuses in a statement descriptor (< > \ ' " *). No control characters, CR or LF.
STATEMENT_TEXT = r"^[\x20\x21\x23-\x26\x28\x29\x2B-\x3B\x3D\x3F-\x5B\x5D-\x7E]*(?!\n)$"
_PATTERN_WORDS = {
    STORABLE_TEXT: "a string without NUL (\\u0000) characters",
    STATEMENT_TEXT: "printable ASCII without < > \\ ' \" or *",
}
_REGEX = re.compile(r"Expected `str` matching regex '(.*)'$")

_UNKNOWN_FIELD = re.compile(r"Object (?:contains unknown|missing required) field `([^`]{1,100})`")
_PATH = re.compile(r"at (?:`key` in )?`\$\.?([^`]*)`")   # a dict key's error names its dict


def error_param(error: msgspec.ValidationError) -> str | None:
    """`Expected int, got str - at $.payment_method.card.exp_month` -> payment_method[card][exp_month]; an
    unknown or missing field is named itself (`Object contains unknown field `x` - at `$.card`` -> card[x])."""
    text = str(error)
    match = _PATH.search(text)
    parts = [part for part in re.split(r"\.|\[|\]", match.group(1)) if part] if match else []
    if unknown := _UNKNOWN_FIELD.match(text):
        parts.append(unknown.group(1))
    if not parts:
        return None
    return parts[0] + "".join(f"[{part}]" for part in parts[1:])


def error_message(error: msgspec.ValidationError) -> str:
    """msgspec's message without its path suffix (the path goes to ``param``), in words for our patterns."""
    message = str(error).split(" - at `", 1)[0].rstrip(".")
    match = _REGEX.match(message)
    if match:
        words = {re.compile(p).pattern.encode("unicode_escape").decode(): w for p, w in _PATTERN_WORDS.items()}
        if match.group(1) in words:
            message = f"Expected {words[match.group(1)]}"
        else:
            message = message.replace(NO_FINAL_NEWLINE_SHOWN, "")
    return message + "."


def ecma_pattern(pattern: str) -> str:
    """A pattern as JSON Schema readers take it: ECMA-262's $ takes no final newline, and some readers (RE2)
    have no lookahead."""
    return pattern.replace(NO_FINAL_NEWLINE, "")
