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
    summary = issuer.summary()
    assert summary["transactions"] == 10 and summary["holds_outstanding"] == 10
    # Holds forgotten for lack of memory are released as expired, so the arithmetic still adds up.
    assert summary["totals"] == {"held": 20_000, "expired": 10_000}
    assert summary["held_outstanding_minor"] == 10_000 == issuer.held_minor("4242424242424242")



def test_card_memory_forgets_the_oldest_card_first():
    issuer = Issuer(cards_max=2)
    cards = ["4242424242424242", "5555555555554444", "6011111111111117"]
    for stan, pan in enumerate(cards):
        authorize(issuer, pan, 300, stan=f"{stan:06d}")
    assert [issuer.held_minor(pan) for pan in cards] == [0, 300, 300]


def test_unsettled_memory_drops_the_oldest_change_first():
    issuer = Issuer(unsettled_max=2)
    for stan in range(3):
        issuer.sale(pan="4242424242424242", amount_minor=100 + stan, terminal_id="T1", stan=f"{stan:06d}",
                    transmission_dt="0101120000")
    assert [change for _, _, change in issuer.take_unsettled()] == [101, 102]
    assert issuer.unsettled_dropped == 1

def test_luhn():
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424243")
    assert not luhn_valid("42424242424a4242")
    assert not luhn_valid("42")


# The lifecycle after the original: captures, reversals, sales and refunds.

PAN = "4111111111111111"


def original(stan: str = "000001", terminal_id: str = "T1", transmission_dt: str = "0101120000", mti="0100"):
    return {"original_mti": mti, "original_stan": stan, "terminal_id": terminal_id, "original_dt": transmission_dt}


def assert_holds_add_up(issuer: Issuer) -> None:
    totals = issuer.totals
    outstanding = issuer.held_outstanding_minor
    assert totals["held"] == totals["captured"] + totals["released"] + totals["expired"] + outstanding
    assert outstanding == sum(hold["held_minor"] for hold in issuer.holds(limit=10_000))


def test_full_capture():
    issuer = Issuer()
    authorize(issuer, PAN, 1000)
    decision = issuer.complete(amount_minor=1000, **original())
    assert (decision.field39, decision.effect, decision.captured_minor, decision.released_minor) == (
        "00", "capture", 1000, 0
    )  # fmt: skip
    assert issuer.held_minor(PAN) == 0 and issuer.spent_minor(PAN) == 1000
    assert issuer.holds(limit=10) == []
    assert_holds_add_up(issuer)


def test_partial_capture_releases_the_rest_and_applies_once():
    issuer = Issuer()
    auth = authorize(issuer, PAN, 1000)
    decision = issuer.complete(amount_minor=600, **original())
    assert (decision.captured_minor, decision.released_minor, decision.auth_code) == (600, 400, auth.auth_code)
    again = issuer.complete(amount_minor=600, **original())
    assert (again.field39, again.effect, again.captured_minor) == ("00", "duplicate", 0)
    assert issuer.held_minor(PAN) == 0 and issuer.spent_minor(PAN) == 600
    assert issuer.totals["captured"] == 600 and issuer.totals["released"] == 400
    assert_holds_add_up(issuer)


def test_capture_refusals():
    issuer = Issuer()
    assert issuer.complete(amount_minor=1, **original()).field39 == "25"  # Unknown original.
    authorize(issuer, PAN, 1000)
    assert issuer.complete(amount_minor=1, **original(mti="0200")).field39 == "25"  # Wrong original MTI.
    assert issuer.complete(amount_minor=1, **original(terminal_id="T2")).field39 == "25"
    assert issuer.complete(amount_minor=1001, **original()).field39 == "13"  # More than the hold.
    authorize(issuer, "4000000000000002", stan="000002")  # Declined.
    assert issuer.complete(amount_minor=1, **original(stan="000002")).field39 == "12"
    issuer.reverse(**original())
    assert issuer.complete(amount_minor=1000, **original()).field39 == "12"  # Reversed already.
    assert issuer.held_minor(PAN) == 0
    assert_holds_add_up(issuer)


def test_full_reversal_releases_the_hold_once():
    issuer = Issuer(balance_minor=1000)
    authorize(issuer, PAN, 1000)
    assert authorize(issuer, PAN, 1, stan="000002").field39 == "51"
    decision = issuer.reverse(**original())
    assert (decision.field39, decision.effect, decision.released_minor) == ("00", "reversal", 1000)
    for _ in range(2):
        repeat = issuer.reverse(**original())
        assert (repeat.field39, repeat.effect, repeat.released_minor) == ("00", "duplicate", 0)
    assert issuer.held_minor(PAN) == 0 and issuer.totals["released"] == 1000
    assert authorize(issuer, PAN, 1000, stan="000003").field39 == "00"  # The balance is back.
    assert_holds_add_up(issuer)


def test_partial_reversal_reduces_the_hold():
    issuer = Issuer()
    authorize(issuer, PAN, 1000)
    decision = issuer.reverse(replacement_minor=700, **original())
    assert (decision.released_minor, decision.remaining_minor) == (300, 700)
    assert issuer.reverse(replacement_minor=700, **original()).effect == "duplicate"
    assert issuer.held_minor(PAN) == 700 and issuer.holds(limit=10)[0]["held_minor"] == 700
    assert issuer.complete(amount_minor=800, **original()).field39 == "13"
    assert issuer.complete(amount_minor=700, **original()).captured_minor == 700
    assert_holds_add_up(issuer)


def test_reversal_of_unknown_or_declined_original():
    issuer = Issuer()
    assert (issuer.reverse(**original()).field39, issuer.reverse(**original()).effect) == ("25", "none")
    authorize(issuer, "4000000000009995")
    decision = issuer.reverse(**original())
    assert (decision.field39, decision.effect) == ("00", "none")


def sale(issuer: Issuer, pan: str, amount_minor: int = 1000, stan: str = "000001", refund: bool = False):
    method = issuer.refund if refund else issuer.sale
    return method(pan=pan, amount_minor=amount_minor, terminal_id="T1", stan=stan, transmission_dt="0101120000")


@pytest.mark.parametrize(("pan", "field39"), [("4242424242424242", "00"), ("4000000000000002", "05"),
                                               ("4000000000000069", "54"), ("4242424242424241", "14")])  # fmt: skip
def test_sale_has_the_authorization_outcomes_and_holds_nothing(pan, field39):
    issuer = Issuer()
    decision = sale(issuer, pan)
    assert decision.field39 == field39
    assert decision.captured_minor == (1000 if field39 == "00" else 0)
    assert issuer.held_minor(pan) == 0 and issuer.totals["held"] == 0


def test_sale_duplicate_and_reversal():
    issuer = Issuer(balance_minor=1000)
    first = sale(issuer, PAN, 600)
    again = sale(issuer, PAN, 600)
    assert (again.field39, again.auth_code, again.effect) == ("00", first.auth_code, "duplicate")
    assert issuer.spent_minor(PAN) == 600 and issuer.totals["sold"] == 600
    assert sale(issuer, PAN, 500, stan="000002").field39 == "51"
    assert issuer.complete(amount_minor=600, **original(mti="0200")).field39 == "12"  # A sale is captured.
    partial = issuer.reverse(replacement_minor=100, **original(mti="0200"))
    assert (partial.effect, partial.reversed_minor) == ("reversal", 500)
    full = issuer.reverse(**original(mti="0200"))
    assert full.reversed_minor == 100 and issuer.spent_minor(PAN) == 0
    assert issuer.totals["sale_reversed"] == 600


def test_refund_credits_known_cards_and_can_be_reversed():
    issuer = Issuer()
    decision = sale(issuer, PAN, 400, refund=True)
    assert (decision.field39, decision.effect, decision.refunded_minor) == ("00", "refund", 400)
    assert issuer.spent_minor(PAN) == -400
    assert sale(issuer, "4000000000000002", stan="000002", refund=True).field39 == "00"  # Known BIN.
    assert sale(issuer, "4242424242424241", stan="000003", refund=True).field39 == "14"  # Luhn fails.
    assert sale(issuer, "7000000000000002", stan="000004", refund=True).field39 == "14"  # Unknown BIN.
    reversed_refund = issuer.reverse(**original(mti="0200"))
    assert reversed_refund.reversed_minor == 400 and issuer.spent_minor(PAN) == 0
    assert issuer.totals["refund_reversed"] == 400
