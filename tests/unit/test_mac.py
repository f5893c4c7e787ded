"""AES-CMAC and field 64 / 128 MACs: RFC 4493 vectors, sign/verify per profile, tamper rejection, the KDF."""

import json

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from switch.iso import PROFILES, mac
from switch.iso.messages import (
    NETWORK_SIGN_ON,
    authorization_request,
    decode,
    encode,
    network_request,
    reversal,
)

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
RFC4493_VECTORS = [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
]
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
OTHER_KEY = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")


def auth() -> dict[str, str]:
    return authorization_request(
        pan="4242424242424242", amount_minor=1234, currency="840", stan="000042", rrn="000000000042",
        terminal_id="TERM0001", merchant_id="MERCHANT000001", expiry_yymm="3012", cvv="123",
    )  # fmt: skip


def reversal_advice() -> dict[str, str]:
    return reversal(
        repeat=True, pan="4242424242424242", amount_minor=1234, currency="840", stan="000042",
        rrn="000000000042", terminal_id="TERM0001", merchant_id="MERCHANT000001", expiry_yymm="3012",
        processing_code="000000", original_mti="0100", original_transmitted_at="0506070809",
        acquirer_id="400001", replacement_amount_minor=0, auth_code="A1B2C3",
    )  # fmt: skip


MESSAGES = {
    "0100": (auth, "64"),
    "0421": (reversal_advice, "128"),
    "0800": (lambda: mac.with_generation(network_request(NETWORK_SIGN_ON, "000001"), 7), "128"),
}


@pytest.mark.parametrize(("length", "expected"), RFC4493_VECTORS)
def test_rfc4493_vectors(length, expected):
    data = RFC4493_MESSAGE[:length]
    assert mac.cmac_full(RFC4493_KEY, data).hex() == expected
    assert mac.cmac(RFC4493_KEY, data).hex() == expected[:16]


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("mti", MESSAGES)
def test_sign_verify_round_trip(profile_name, mti):
    profile = PROFILES[profile_name]
    build, field = MESSAGES[mti]
    message = build()
    data = mac.sign(profile, message, KEY)
    assert mac.mac_field_present(profile, data) == field
    assert mac.verify(profile, data, KEY)
    assert not mac.verify(profile, data, OTHER_KEY)
    decoded = decode(profile, data)
    assert decoded.pop(field) == mac.cmac(KEY, data[:-mac.MAC_BYTES]).hex().upper()
    assert decoded == message


@pytest.mark.parametrize("profile_name", ["visa", "mastercard"])
@pytest.mark.parametrize("mti", MESSAGES)
def test_any_flipped_bit_is_rejected(profile_name, mti):
    profile = PROFILES[profile_name]
    data = mac.sign(profile, MESSAGES[mti][0](), KEY)
    for bit in range(len(data) * 8):
        tampered = bytearray(data)
        tampered[bit // 8] ^= 1 << (bit % 8)
        assert not mac.verify(profile, bytes(tampered), KEY), f"bit {bit} flipped and still verified"


@pytest.mark.parametrize("profile_name", PROFILES)
def test_missing_or_misplaced_mac_is_rejected(profile_name):
    profile = PROFILES[profile_name]
    assert not mac.verify(profile, encode(profile, auth()), KEY)
    assert not mac.verify(profile, b"", KEY)
    assert not mac.verify(profile, mac.sign(profile, auth(), KEY)[:-1], KEY)
    # A MAC in field 64 of a message with a secondary bitmap belongs in 128.
    misplaced = {**reversal_advice(), "64": "00" * 8}
    data = encode(profile, misplaced)
    forged = data[:-8] + mac.cmac(KEY, data[:-8])
    assert mac.mac_field_present(profile, forged) is None
    assert not mac.verify(profile, forged, KEY)


def test_sign_replaces_an_existing_mac():
    profile = PROFILES["visa"]
    message = {**auth(), "64": "FF" * 8, "128": "EE" * 8}
    assert mac.sign(profile, message, KEY) == mac.sign(profile, auth(), KEY)


def test_session_key_derivation_is_sp800_108_counter_mode():
    master = bytes(range(32))
    expected_input = (
        b"\x00\x00\x00\x01" + b"ISO8583-MAC-SESSION" + b"\x00" + b"visa" + b"\x00"
        + (1_700_000_000).to_bytes(8, "big") + b"\x00\x00\x00\x80"
    )
    prf = CMAC(algorithms.AES(master))
    prf.update(expected_input)
    assert mac.kdf_input("visa", 1_700_000_000) == expected_input
    assert mac.derive_session_key(master, "visa", 1_700_000_000) == prf.finalize()


def test_session_keys_differ_by_generation_and_network():
    master = bytes(range(32))
    keys = {mac.derive_session_key(master, network, generation)
            for network in ("visa", "mastercard") for generation in (1, 2, 3)}
    assert len(keys) == 6 and all(len(key) == mac.SESSION_KEY_BYTES for key in keys)


@pytest.mark.parametrize("generation", [0, -1, mac.GENERATION_MAX + 1, True, 1.5])
def test_bad_generations_are_refused(generation):
    with pytest.raises(mac.MacKeyError):
        mac.kdf_input("visa", generation)


def test_generation_travels_in_field_48():
    sign_on = mac.with_generation(network_request(NETWORK_SIGN_ON, "000001"), 1_700_000_123)
    assert sign_on["48"] == "KG0101700000123"
    assert mac.generation_of(sign_on) == 1_700_000_123
    assert mac.generation_of(network_request(NETWORK_SIGN_ON, "000001")) is None
    assert mac.generation_of({"48": "KG003abc"}) is None
    assert mac.generation_of({"48": "KG0010"}) is None
    assert mac.generation_of({"48": "K"}) is None


def test_key_file_round_trip_and_errors_never_show_keys():
    keys = {"visa": bytes(range(32)), "mastercard": bytes(range(16))}
    assert dict(mac.parse_master_keys(mac.format_master_keys(keys))) == keys
    secret_hex = "ab" * 31
    with pytest.raises(mac.MacKeyError) as caught:
        mac.parse_master_keys(json.dumps({"visa": secret_hex}))
    assert secret_hex not in str(caught.value) and "visa" in str(caught.value)
    for text in ("not json", "[]", json.dumps({"Visa!": "00" * 32}), json.dumps({"visa": "zz" * 32})):
        with pytest.raises(mac.MacKeyError):
            mac.parse_master_keys(text)


def test_a_keyed_state_reused_across_messages_and_keys_gives_each_its_own_mac():
    # cmac_full keeps one keyed CMAC state per key and copies it per message (a bounded table).
    keys = [bytes([n]) * 16 for n in range(mac._KEYED_MAX + 3)]    # more keys than the table holds
    for data in (b"", b"one message", b"another, longer message than one block"):
        for key in keys + keys[:2]:
            fresh = CMAC(algorithms.AES(key))
            fresh.update(data)
            assert mac.cmac_full(key, data) == fresh.finalize()
    assert len(mac._keyed) <= mac._KEYED_MAX
