"""The bench's --new-cards: each payment's card number is new, Luhn-valid and one the simulator approves."""

from __future__ import annotations

import json

import pytest

from acquirer_sim.issuer import TEST_CARDS, known_card
from loadtest.bench import main, new_card_bodies
from loadtest.mix import NewCards


def test_numbers_are_distinct_luhn_valid_and_approvable() -> None:
    cards = NewCards()
    numbers = [cards.next() for _ in range(20_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(len(number) == 16 and known_card(number) and number not in TEST_CARDS for number in numbers)


def test_bodies_carry_the_fields_and_a_new_number_each() -> None:
    fields = {"amount": 1999, "currency": "usd", "capture_method": "manual", "payment_method": "tok_x"}
    body, fields_of = new_card_bodies(fields)
    first, second = json.loads(body()), json.loads(body())
    assert first["amount"] == 1999 and first["capture_method"] == "manual"
    assert first["payment_method"]["card"]["number"] != second["payment_method"]["card"]["number"]
    assert first["payment_method"]["card"]["cvc"] == "123"
    tcp = fields_of()
    assert known_card(tcp["payment_method"]["card"]["number"])  # type: ignore[index]


def test_new_cards_needs_raw_card() -> None:
    with pytest.raises(SystemExit):
        main(["--new-cards", "--url", "http://127.0.0.1:1", "--api-key", "k"])
