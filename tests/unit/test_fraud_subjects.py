"""A payment's velocity counter keys: the script's KEYS packed by hand for a card and its merchant (the
common case) read as the RESP packer writes them, and no subject names a card, address or email."""

from __future__ import annotations

from loadtest.mix import NewCards
from switch.fraud.velocity import Velocity
from switch.idempotency.resp import packed

NUMBER = NewCards("4").next()


class _Scripts:
    def register_script(self, script: str) -> str:
        return "0" * 40


def test_a_card_and_merchant_packs_its_keys_as_the_packer_does() -> None:
    velocity = Velocity(_Scripts(), b"k" * 32)  # type: ignore[arg-type]
    for merchant in ("acct_1", "acct_1", "acct_" + "x" * 200):      # the second: the merchant's key remembered
        subjects = velocity.subjects(merchant, velocity.card_hash(NUMBER), None, None)
        assert subjects.names == ("card", "merchant") and subjects.distinct == ""
        assert subjects.script_keys == packed("", *subjects.keys)


def test_with_an_address_and_email_every_key_is_packed_and_hashed() -> None:
    velocity = Velocity(_Scripts(), b"k" * 32)  # type: ignore[arg-type]
    subjects = velocity.subjects("acct_1", velocity.card_hash(NUMBER), "10.1.2.3", "a@example.com")
    assert subjects.names == ("card", "ip", "email", "merchant")
    assert subjects.script_keys == packed(subjects.distinct, *subjects.keys)
    text = repr(subjects)
    assert NUMBER not in text and "10.1.2.3" not in text and "example.com" not in text
