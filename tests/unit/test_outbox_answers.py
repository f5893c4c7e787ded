"""Which network answers end an outbox row: a reversal or capture advice the network says it did not act
on is sent again, and "unable to locate the original" is believed only after the original had time to
arrive (switch.outbox.sender)."""

from __future__ import annotations

import pytest

from switch.outbox.sender import LOCATE_ATTEMPTS_MAX, acknowledges


@pytest.mark.parametrize("code", ["00", "94", "12", "13", "05", ""])
def test_an_answer_that_acted_or_decided_ends_the_row(code: str) -> None:
    assert acknowledges(code, 1)


@pytest.mark.parametrize("code", ["91", "92", "96", "19"])
def test_an_answer_that_did_not_act_is_sent_again_however_often(code: str) -> None:
    assert not acknowledges(code, 1)
    assert not acknowledges(code, 50)


def test_unable_to_locate_is_believed_only_at_the_last_attempt() -> None:
    assert [acknowledges("25", attempts) for attempts in range(1, LOCATE_ATTEMPTS_MAX + 2)] == (
        [False] * (LOCATE_ATTEMPTS_MAX - 1) + [True, True])
