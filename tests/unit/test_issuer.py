"""The simulated issuer's decisions, as pure logic."""

import pytest

from acquirer_sim.issuer import Issuer, luhn_valid


def authorize(
    issuer: Issuer,
    pan: str,
    amount_minor: int = 1000,
    stan: str = "000001",
    terminal_id: str = "T1",
    transmission_dt: str = "0101120000",
):
    return issuer.authorize(
        pan=pan,
        amount_minor=amount_minor,
        terminal_id=terminal_id,
        stan=stan,
        transmission_dt=transmission_dt,
    )


@pytest.mark.parametrize(
    ("pan", "field39"),
    [
        ("4242424242424242", "00"), ("5555555555554444", "00"), ("378282246310005", "00"),
        ("6011111111111117", "00"), ("3566002020360505", "00"), ("36227206271667", "00"),
        ("6200000000000005", "00"), ("4000000000000002", "05"), ("4000000000009995", "51"),
        ("4000000000009987", "41"), ("4000000000009979", "43"), ("4000000000000069", "54"),
        ("4000000000000127", "N7"), ("4000000000000119", "96"),
        ("4242424242424241", "14"),  # Luhn fails.
        ("7000000000000002", "14"), ("1000000000000009", "14"),  # BIN outside 2-6.
        ("4111111111111111", "00"),  # Unlisted but Luhn-valid.
    ],
)  # fmt: skip
def test_card_outcomes(pan, field39):
    decision = authorize(Issuer(), pan)
    assert decision.field39 == field39
    if field39 == "00":
        assert decision.auth_code is not None and len(decision.auth_code) == 6
        assert decision.effect == "hold" and decision.held_minor == 1000
    else:
        assert decision.auth_code is None and decision.effect == "none"


def test_auth_codes_are_unique():
    issuer = Issuer()
    codes = {authorize(issuer, "4242424242424242", stan=f"{n:06d}").auth_code for n in range(1000)}
    assert len(codes) == 1000


def test_other_cards_approve_up_to_their_balance():
    issuer = Issuer(balance_minor=1000)
    pan = "4111111111111111"
    assert authorize(issuer, pan, 600, stan="000001").field39 == "00"
    assert authorize(issuer, pan, 500, stan="000002").field39 == "51"
    assert authorize(issuer, pan, 400, stan="000003").field39 == "00"
    assert issuer.held_minor(pan) == 1000
    assert authorize(issuer, "5105105105105100", 1000).field39 == "00"  # Balances are per card.


def test_named_approving_cards_have_no_limit():
    issuer = Issuer(balance_minor=1000)
    for stan in range(5):
        assert authorize(issuer, "4242424242424242", 999, stan=f"{stan:06d}").field39 == "00"


def test_duplicate_transmission_is_answered_once():
    issuer = Issuer()
    pan = "4111111111111111"
    first = authorize(issuer, pan, 700)
    again = authorize(issuer, pan, 700)
    assert again.field39 == first.field39 and again.auth_code == first.auth_code
    assert again.effect == "duplicate"
    assert issuer.held_minor(pan) == 700
    # A new transmission time is a new message, even with the same STAN.
    assert authorize(issuer, pan, 100, transmission_dt="0101120001").effect == "hold"


def test_duplicate_memory_is_bounded():
    issuer = Issuer(duplicates_max=10)
    for stan in range(20):
        authorize(issuer, "4242424242424242", stan=f"{stan:06d}")
    assert len(issuer._decisions) == 10


def test_luhn():
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424243")
    assert not luhn_valid("42424242424a4242")
    assert not luhn_valid("42")
