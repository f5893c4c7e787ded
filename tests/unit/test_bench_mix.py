"""The bench's default traffic (loadtest/mix.py): the shares of each kind, cards the simulator answers as the
mix expects, and the follow-up requests."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from acquirer_sim.issuer import APPROVED, TEST_CARDS, known_card
from loadtest import mix
from loadtest.bench import main
from switch.common.cards import detect_brand

TOKENS = ["tok_a", "tok_b"]


def test_the_kinds_come_in_their_shares() -> None:
    drawn = mix.Mix(TOKENS, seed=11)
    kinds = Counter(drawn.next().kind for _ in range(20_000))
    assert abs(kinds["first_time"] / 20_000 - mix.FIRST_TIME_PCT / 100) < 0.02
    assert abs(kinds["saved"] / 20_000 - mix.SAVED_PCT / 100) < 0.02
    assert abs(kinds["decline"] / 20_000 - (100 - mix.FIRST_TIME_PCT - mix.SAVED_PCT) / 100) < 0.02


def test_a_seed_repeats_its_run() -> None:
    first, second = mix.Mix(TOKENS, seed=3), mix.Mix(TOKENS, seed=3)
    assert [first.next()[0::2] for _ in range(200)] == [second.next()[0::2] for _ in range(200)]


def test_each_kind_carries_what_the_simulator_answers_as_expected() -> None:
    drawn = mix.Mix(TOKENS, seed=5)
    brands: Counter[str | None] = Counter()
    follows: Counter[str | None] = Counter()
    for _ in range(5_000):
        step = drawn.next()
        body = json.loads(step.body)
        assert body["amount"] == mix.AMOUNT_MINOR
        assert body.get("capture_method") == ("manual" if step.follow == "capture" else None)
        method = body["payment_method"]
        if step.kind == "saved":
            assert method in TOKENS and step.expected == 200
        elif step.kind == "first_time":
            number = method["card"]["number"]
            assert known_card(number) and number not in TEST_CARDS and step.expected == 200
            brands[detect_brand(number)] += 1
        else:
            assert TEST_CARDS[method["card"]["number"]] != APPROVED and step.expected == 402
            assert step.follow is None
        follows[step.follow] += 1
    assert set(brands) == {"visa", "mastercard", "discover"}
    assert set(follows) == {None, "capture", "refund"}


def test_saved_cards_approve_without_limit() -> None:
    assert all(TEST_CARDS[number] == APPROVED for number in mix.SAVED_CARDS)


def test_follow_ups_capture_in_full_or_part_and_refund_in_part() -> None:
    drawn = mix.Mix(TOKENS, seed=1)
    capture = mix.Step("saved", b"", "capture", 200)
    bodies = {drawn.follow_up(capture, "pay_1")[1] for _ in range(50)}
    assert bodies == {b"{}", json.dumps({"amount_to_capture": mix.PARTIAL_CAPTURE_MINOR}).encode()}
    assert drawn.follow_up(capture, "pay_1")[0] == "/v1/payments/pay_1/capture"
    path, body = drawn.follow_up(mix.Step("saved", b"", "refund", 200), "pay_2")
    assert path == "/v1/refunds" and json.loads(body) == {"payment": "pay_2", "amount": mix.REFUND_MINOR}


@pytest.mark.parametrize("prefix", mix.NEW_CARD_PREFIXES)
def test_new_cards_of_each_brand_are_distinct_and_valid(prefix: str) -> None:
    cards = mix.NewCards(prefix)
    numbers = [cards.next() for _ in range(5_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(len(number) == 16 and known_card(number) and number.startswith(prefix) for number in numbers)


def test_the_mix_runs_over_http_only() -> None:
    with pytest.raises(SystemExit):
        main(["--transport", "tcp", "--url", "http://127.0.0.1:1", "--api-key", "k"])
