"""decode(encode(m)) == m for every message kind we send or answer, in every profile."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.iso import PROFILES, IsoError, decode, encode, mask_pan
from switch.iso.messages import (
    authorization_request,
    completion_advice,
    financial_request,
    match_key,
    network_request,
    parse_original_data_elements,
    parse_replacement_amounts,
    response_for,
    reversal,
    transmission_datetime,
)

profiles = st.sampled_from(list(PROFILES.values()))
digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def numeric(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=size, max_size=size)


def text(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=printable, min_size=size, max_size=size)


authorizations = st.fixed_dictionaries(
    {
        "t": st.just("0100"),
        "2": st.text(alphabet="0123456789", min_size=12, max_size=19),
        "3": numeric(6), "4": numeric(12), "7": numeric(10), "11": numeric(6), "12": numeric(6),
        "13": numeric(4), "14": numeric(4), "22": numeric(3), "37": text(12), "41": text(8),
        "42": text(15), "49": numeric(3),
    },
    optional={
        "18": numeric(4), "25": numeric(2), "43": text(40),
        "32": st.text("0123456789", min_size=1, max_size=11),
        "48": st.text(alphabet=printable, min_size=1, max_size=999),
        "64": st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper()),
        "90": numeric(42), "95": text(42),
        "128": st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper()),
    },
)  # fmt: skip

network_requests = st.fixed_dictionaries(
    {"t": st.just("0800"), "7": numeric(10), "11": numeric(6), "70": st.sampled_from(["001", "002", "301"])}
)


@settings(max_examples=200)
@given(profile=profiles, message=authorizations)
def test_authorization_request_round_trips(profile, message):
    assert decode(profile, encode(profile, message)) == message


@settings(max_examples=200)
@given(profile=profiles, request=authorizations, code=text(2), auth_code=text(6))
def test_authorization_response_round_trips(profile, request, code, auth_code):
    response = response_for(request, code, **{"38": auth_code})
    assert response["t"] == "0110"
    assert match_key(response) == match_key(request)
    assert decode(profile, encode(profile, response)) == response


@given(profile=profiles, request=network_requests)
def test_network_messages_round_trip(profile, request):
    assert decode(profile, encode(profile, request)) == request
    response = response_for(request, "00")
    assert response["t"] == "0810" and response["70"] == request["70"]
    assert decode(profile, encode(profile, response)) == response


def test_builders_produce_what_the_profiles_accept():
    request = authorization_request(
        pan="4242424242424242",
        amount_minor=1999,
        currency="978",
        stan="000042",
        rrn="000000000042",
        terminal_id="TERM1",
        merchant_id="MERCHANT1",
        expiry_yymm="3012",
        cvv="123",
    )
    assert request["4"] == "000000001999"
    assert match_key(request) == ("010", "TERM1   ", "000042")
    assert match_key(network_request("301", "000007")) == ("080", "", "000007")
    for profile in PROFILES.values():
        assert decode(profile, encode(profile, request)) == request


@pytest.mark.parametrize("profile", PROFILES.values(), ids=lambda p: p.name)
def test_errors_never_show_the_pan(profile):
    pan = "4242424242424242"
    with pytest.raises(IsoError) as error:
        encode(profile, {"t": "0100", "2": pan, "3": "12345"})  # Field 3 is too short.
    assert pan not in str(error.value)
    with pytest.raises(IsoError) as error:
        encode(profile, {"t": "0100", "2": pan, "4": "12345678901X"})
    assert pan not in str(error.value) and "field 4" in str(error.value)
    data = encode(profile, {"t": "0100", "2": pan, "3": "000000"})
    for cut in (len(data) - 1, len(data) - 4, 5):
        with pytest.raises(IsoError) as error:
            decode(profile, data[:cut])
        assert pan not in str(error.value)


def test_profiles_differ_on_the_wire():
    message = network_request("001", "000001")
    wires = {name: encode(profile, message) for name, profile in PROFILES.items()}
    assert len(set(wires.values())) == len(wires)
    assert wires["visa"].startswith(b"\x08\x00")  # BCD MTI.
    assert wires["mastercard"].startswith(b"0800") and wires["mastercard"][4:20].isalnum()  # Hex bitmap.


def test_mask_pan():
    assert mask_pan("4242424242424242") == "424242******4242"
    assert mask_pan("123") == "***"


# Builders driven by Hypothesis: what the payment engine sends must encode in every profile.
amounts = st.integers(min_value=1, max_value=999_999_999_999)
datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
card_fields = {
    "pan": st.text(alphabet="0123456789", min_size=12, max_size=19),
    "currency": numeric(3),
    "stan": numeric(6),
    "rrn": text(12),
    "terminal_id": st.text(alphabet=printable, min_size=1, max_size=8),
    "merchant_id": st.text(alphabet=printable, min_size=1, max_size=15),
    "expiry_yymm": numeric(4),
    "now": datetimes,
}
financial_requests = st.fixed_dictionaries(
    {
        **card_fields,
        "amount_minor": amounts,
        "processing_code": st.sampled_from(["000000", "200000", "003000", "200030"]),
    },
    optional={"cvv": numeric(3)},
).map(lambda kwargs: financial_request(**kwargs))


@st.composite
def original_data_kwargs(draw, replacement: st.SearchStrategy[int] | None = None) -> dict:
    amount_minor = draw(amounts)
    return {
        **{name: draw(strategy) for name, strategy in card_fields.items()},
        "repeat": draw(st.booleans()),
        "amount_minor": amount_minor,
        "processing_code": draw(st.sampled_from(["000000", "200000"])),
        "original_mti": draw(st.sampled_from(["0100", "0200"])),
        "original_transmitted_at": draw(numeric(10)),
        "acquirer_id": draw(st.text(alphabet="0123456789", min_size=1, max_size=11)),
        "auth_code": draw(st.none() | st.text(alphabet=printable, min_size=1, max_size=6)),
        "replacement_amount_minor": draw(
            st.integers(min_value=1, max_value=amount_minor) | st.just(amount_minor)
            if replacement is None
            else replacement
        ),
    }


@settings(max_examples=200)
@given(profile=profiles, request=financial_requests, code=text(2), auth_code=text(6))
def test_financial_request_and_response_round_trip(profile, request, code, auth_code):
    assert request["t"] == "0200" and request["3"][:2] in ("00", "20")
    assert decode(profile, encode(profile, request)) == request
    response = response_for(request, code, **{"38": auth_code})
    assert response["t"] == "0210" and match_key(response) == match_key(request)
    assert decode(profile, encode(profile, response)) == response


@settings(max_examples=200)
@given(profile=profiles, kwargs=original_data_kwargs(), code=text(2))
def test_completion_advice_and_response_round_trip(profile, kwargs, code):
    advice = completion_advice(**kwargs)
    assert advice["t"] == ("0221" if kwargs["repeat"] else "0220")
    assert advice["4"] == f"{kwargs['amount_minor']:012d}" and advice["11"] == kwargs["stan"]
    original = parse_original_data_elements(advice["90"])
    assert original == (kwargs["original_mti"], kwargs["stan"], kwargs["original_transmitted_at"])
    assert advice["90"][20:31] == kwargs["acquirer_id"].zfill(11) and advice["90"][31:] == "0" * 11
    if kwargs["replacement_amount_minor"] < kwargs["amount_minor"]:
        assert parse_replacement_amounts(advice["95"]) == kwargs["replacement_amount_minor"]
        assert advice["95"][12:] == "0" * 30
    else:
        assert "95" not in advice
    assert ("38" in advice) == bool(kwargs["auth_code"])
    assert decode(profile, encode(profile, advice)) == advice
    response = response_for(advice, code)
    assert response["t"] == "0230" and match_key(response) == match_key(advice)
    assert decode(profile, encode(profile, response)) == response


@settings(max_examples=200)
@given(
    profile=profiles,
    kwargs=original_data_kwargs(st.just(0) | st.integers(min_value=1, max_value=999_999_999_999)),
    code=text(2),
)
def test_reversal_and_response_round_trip(profile, kwargs, code):
    kwargs["replacement_amount_minor"] = min(kwargs["replacement_amount_minor"], kwargs["amount_minor"])
    message = reversal(**kwargs)
    assert message["t"] == ("0421" if kwargs["repeat"] else "0400")
    assert parse_original_data_elements(message["90"])[1] == message["11"] == kwargs["stan"]
    if kwargs["replacement_amount_minor"]:
        assert parse_replacement_amounts(message["95"]) == kwargs["replacement_amount_minor"]
    else:
        assert "95" not in message
    assert decode(profile, encode(profile, message)) == message
    response = response_for(message, code)
    assert response["t"] == ("0430" if kwargs["repeat"] else "0410")
    assert match_key(response) == match_key(message)
    assert decode(profile, encode(profile, response)) == response
    advice = dict(message, t="0420")
    assert decode(profile, encode(profile, advice)) == advice
    assert match_key(response_for(advice, code)) == match_key(advice)


def test_match_keys_pair_requests_with_responses_only():
    pairs = [("0100", "0110"), ("0200", "0210"), ("0220", "0230"), ("0221", "0230"), ("0400", "0410"),
             ("0420", "0430"), ("0421", "0430"), ("0800", "0810")]  # fmt: skip
    keys = {}
    for request, response in pairs:
        key = match_key({"t": request, "11": "000001", "41": "T1"})
        assert key == match_key({"t": response, "11": "000001", "41": "T1"})
        keys.setdefault(key, set()).add(request)
    # An 0220 or 0400 keeps its original's STAN, so it must not share a key with an 0100 or 0200.
    assert len(keys) == 6


ORIGINAL = {
    "pan": "4242424242424242", "amount_minor": 1000, "currency": "978", "stan": "000042",
    "rrn": "RRN000000042", "terminal_id": "TERM1", "merchant_id": "MERCHANT1", "expiry_yymm": "3012",
    "processing_code": "000000", "original_mti": "0100", "original_transmitted_at": "0101120000",
    "acquirer_id": "400001", "auth_code": "A1B2", "now": datetime(2030, 2, 3, 4, 5, 6, tzinfo=UTC),
}  # fmt: skip


def test_completion_and_reversal_field_conventions():
    advice = completion_advice(repeat=False, replacement_amount_minor=600, **ORIGINAL)
    assert advice["4"] == "000000001000" and advice["7"] == "0203040506"
    assert advice["90"] == "".join(("0100", "000042", "0101120000", "00000400001", "00000000000"))
    assert advice["95"] == "000000000600" + "0" * 12 + "0" * 18
    assert advice["38"] == "A1B2  " and advice["11"] == "000042" and advice["37"] == "RRN000000042"
    assert "95" not in completion_advice(repeat=True, replacement_amount_minor=1000, **ORIGINAL)
    full = reversal(repeat=False, replacement_amount_minor=0, **{**ORIGINAL, "auth_code": None})
    assert full["t"] == "0400" and "95" not in full and "38" not in full
    partial = reversal(repeat=True, replacement_amount_minor=250, **ORIGINAL)
    assert partial["t"] == "0421" and partial["95"].startswith("000000000250")
    for builder, bad in ((completion_advice, 0), (completion_advice, 1001), (reversal, 1001), (reversal, -1)):
        with pytest.raises(IsoError):
            builder(repeat=False, replacement_amount_minor=bad, **ORIGINAL)
    with pytest.raises(IsoError) as error:
        reversal(repeat=False, replacement_amount_minor=0, **{**ORIGINAL, "acquirer_id": "123456789012"})
    assert ORIGINAL["pan"] not in str(error.value)


def test_financial_request_shares_the_authorization_layout():
    names = (
        "pan",
        "amount_minor",
        "currency",
        "stan",
        "rrn",
        "terminal_id",
        "merchant_id",
        "expiry_yymm",
        "now",
    )
    kwargs = {name: ORIGINAL[name] for name in names}
    sale = financial_request(cvv="123", **kwargs)
    refund = financial_request(processing_code="200000", **kwargs)
    assert sale == {**authorization_request(cvv="123", **kwargs), "t": "0200"}
    assert refund["t"] == "0200" and refund["3"] == "200000" and "48" not in refund


@given(st.lists(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1),
                             timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]) | st.none()),
                min_size=1, max_size=20))
def test_field_7_is_each_moments_own_second(moments):
    # UTC moments are formatted once a second and kept: whatever order moments come in (a late payment's, a
    # second's boundary crossed and back, another zone's or a naive one between), each gets its own second,
    # as strftime formats it.
    assert [transmission_datetime(now) for now in moments] == [now.strftime("%m%d%H%M%S") for now in moments]
