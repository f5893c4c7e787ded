"""Stripe's form-encoded bodies and query strings: ``a=1&metadata[order]=7&expand[0]=latest_charge`` into
nested dicts and lists, within bounds, before any typed decoding.

    key     := name ("[" segment? "]")*        name, segment: [A-Za-z0-9_.-]{1,100}
    a[b]=x        {"a": {"b": "x"}}
    a[]=x&a[]=y   {"a": ["x", "y"]}
    a[0]=x&a[1]=y {"a": ["x", "y"]}      indexes 0..n-1, each once (the official SDKs send these)
    a[0][b]=x     {"a": [{"b": "x"}]}

Every value is a string, and `metadata[...]` is always a hash; the typed layer converts numbers and
booleans (switch.frontends.stripe.params).
A key given twice is refused (a request must mean one thing), as are a key that is both a value and a
mapping, indexes with gaps, and more than FIELDS_MAX fields or DEPTH_MAX levels. Errors are ApiErrors
naming the key (never a value: it may be a card number).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from switch.common import errors

FIELDS_MAX = 512
DEPTH_MAX = 5
KEY_LENGTH_MAX = 300
_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,100})((?:\[[A-Za-z0-9_.-]{0,100}\])*)\Z")
_SEGMENT = re.compile(r"\[([A-Za-z0-9_.-]{0,100})\]")

Form = dict[str, object]


def parse(text: str | bytes) -> Form:
    """A body or a query string as nested dicts and lists of strings."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise errors.invalid_request("invalid_form", "The request body is not UTF-8 form data.") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=FIELDS_MAX)
    except ValueError:
        raise errors.invalid_request("parameters_exceeded", f"A request has at most {FIELDS_MAX} parameters.") \
            from None
    root: Form = {}
    for key, value in pairs:
        _put(root, _path(key), value, key)
    listed = _listed(root, "")
    assert isinstance(listed, dict)
    return listed


def _path(key: str) -> list[str]:
    match = _KEY.match(key) if len(key) <= KEY_LENGTH_MAX else None
    if match is None:
        raise _invalid_name(key)
    segments = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if len(segments) > DEPTH_MAX:
        raise errors.invalid_request("parameter_invalid", f"{key[:100]} is nested more than {DEPTH_MAX} levels "
                                     "deep.", key[:100])
    return segments


def _invalid_name(key: str) -> errors.ApiError:
    """A key that is no parameter name. It is quoted only when it holds nothing but name characters: a body
    sent as JSON without its content type, or a key and value encoded together, would quote the card."""
    if key.lstrip().startswith("{"):
        return errors.invalid_request("parameter_invalid", "The body is not form-encoded: a JSON body needs "
                                      "Content-Type: application/json.")
    if _NAME_CHARACTERS.fullmatch(key[:100]):
        return errors.invalid_request("parameter_invalid", f"Invalid parameter name: {key[:100]!r}.", key[:100])
    return errors.invalid_request("parameter_invalid", "Invalid parameter name: a name is letters, digits and _, "
                                  "then [key] or [] segments.")


_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.\[\]-]*")


class _Appended(list[object]):
    """A list built with ``a[]=``: each value appends."""


def _put(node: Form, path: list[str], value: str, key: str) -> None:
    for depth, segment in enumerate(path[:-1]):
        following = path[depth + 1]
        child = node.get(segment) if segment else None
        if segment == "":
            raise errors.invalid_request("parameter_invalid", f"{key[:100]}: [] can only end a parameter name.",
                                         key[:100])
        if child is None:
            child = node[segment] = _Appended() if following == "" else {}
        if following == "":
            if not isinstance(child, _Appended):
                raise _conflict(key)
            child.append(value)
            if depth + 2 != len(path):
                raise errors.invalid_request("parameter_invalid", f"{key[:100]}: [] can only end a parameter "
                                             "name.", key[:100])
            return
        if not isinstance(child, dict):
            raise _conflict(key)
        node = child
    last = path[-1]
    if isinstance(node.get(last), (dict, list)):
        raise _conflict(key)
    if last in node:
        raise errors.invalid_request("parameter_repeated", f"The parameter {key[:100]} is given more than once.",
                                     key[:100])
    node[last] = value


def _conflict(key: str) -> errors.ApiError:
    return errors.invalid_request("parameter_invalid", f"{key[:100]} is given both as a value and as a hash or "
                                  "an array.", key[:100])


def _listed(node: object, name: str) -> object:
    """Mappings keyed 0..n-1 become lists (but `metadata`, whose keys are the merchant's: "0" is a key
    there); _Appended lists become plain ones."""
    if isinstance(node, _Appended):
        return list(node)
    if not isinstance(node, dict):
        return node
    converted = {key: _listed(value, key) for key, value in node.items()}
    if name != "metadata" and converted and all(key.isdigit() for key in converted):
        indexes = sorted(int(key) for key in converted)
        if indexes == list(range(len(indexes))) and all(str(int(key)) == key for key in converted):
            return [converted[str(index)] for index in indexes]
    return converted
