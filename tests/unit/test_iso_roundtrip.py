"""decode(encode(m)) == m for every message kind we send or answer, in every profile."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.iso import PROFILES, IsoError, decode, encode, mask_pan
from switch.iso.messages import authorization_request, match_key, network_request, response_for

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
    assert match_key(request) == ("01", "TERM1   ", "000042")
    assert match_key(network_request("301", "000007")) == ("08", "", "000007")
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
