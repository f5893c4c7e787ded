"""A JSON object that repeats a key is found, however the text is written (escapes, nesting, spaces)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from switch.frontends.http.schema import repeats_a_key

KEYS = st.text(max_size=8)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=10)


@given(st.dictionaries(KEYS, VALUES, max_size=6), st.booleans(), st.booleans())
def test_json_as_any_encoder_writes_it_repeats_nothing(value: dict, ascii_only: bool, spaced: bool) -> None:
    separators = (" , ", " : ") if spaced else (",", ":")
    assert not repeats_a_key(json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode())


@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=6), st.data())
def test_a_repeated_key_is_found_at_any_depth(value: dict, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    text = json.dumps(value)
    repeated = text[:-1] + ", " + json.dumps(key) + ": " + json.dumps(data.draw(VALUES)) + "}"
    nested = json.dumps({"outer": 1})[:-1] + ", \"inner\": " + repeated + "}"
    assert repeats_a_key(repeated.encode()) and repeats_a_key(nested.encode())
