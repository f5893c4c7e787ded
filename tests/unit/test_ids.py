"""Object ids: prefix + 22 base62 digits, unique, every digit equally likely."""

from collections import Counter

from switch.common import ids


def test_ids_are_22_base62_digits_after_the_prefix():
    made = [ids.new_id("pay") for _ in range(20_000)]
    assert len(set(made)) == len(made)
    assert all(i.startswith("pay_") and len(i) == 26 and set(i[4:]) <= set(ids._ALPHABET) for i in made)


def test_every_digit_is_equally_likely():
    counts = Counter(digit for _ in range(20_000) for digit in ids.new_id("x")[2:])
    expected = 20_000 * 22 / 62
    assert set(counts) == set(ids._ALPHABET)
    # Bytes 248..255 are dropped, not folded onto digits 0..7, which would make those 25 % more likely.
    assert all(abs(n - expected) < 0.1 * expected for n in counts.values())


def test_draws_again_when_too_many_bytes_are_dropped(monkeypatch):
    draws = iter([bytes([255] * 20 + [0] * 12), bytes(range(32))])
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: next(draws))
    made = ids.new_id("pay")
    assert made == "pay_" + "0" * 12 + ids._ALPHABET[:10]
