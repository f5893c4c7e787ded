"""Object ids: prefix + 22 base62 digits (7 of the creation time in ms, 15 random), unique, in creation
order, every random digit equally likely."""

from collections import Counter

from switch.common import ids


def test_ids_are_22_base62_digits_after_the_prefix():
    made = [ids.new_id("pay") for _ in range(20_000)]
    assert len(set(made)) == len(made)
    assert all(i.startswith("pay_") and len(i) == 26 and set(i[4:]) <= set(ids._ALPHABET) for i in made)


def test_ids_sort_by_their_millisecond():
    times_ms = [0, 1, 61, 62, 999, 1_000, 1_764_990_000_000, 1_764_990_000_001, 62**7 - 1]
    made = [ids.new_id("pay", now_ms=ms) for ms in reversed(times_ms)]
    assert sorted(made) == list(reversed(made))
    assert made[0][4:11] == "zzzzzzz"                   # the last millisecond 7 digits hold (year 2081)


def test_ids_of_one_millisecond_differ_in_their_random_digits():
    made = {ids.new_id("pay", now_ms=1_764_990_000_000) for _ in range(1_000)}
    assert len(made) == 1_000 and len({i[:11] for i in made}) == 1


def test_every_random_digit_is_equally_likely():
    counts = Counter(digit for _ in range(20_000) for digit in ids.new_id("x")[9:])
    expected = 20_000 * 15 / 62
    assert set(counts) == set(ids._ALPHABET)
    # Bytes 248..255 are dropped, not folded onto digits 0..7, which would make those 25 % more likely.
    assert all(abs(n - expected) < 0.1 * expected for n in counts.values())


def test_draws_again_when_too_many_bytes_are_dropped(monkeypatch):
    draws = iter([bytes([255] * 20 + [0] * 4), bytes(range(24))])
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: next(draws))
    made = ids.new_id("pay", now_ms=0)
    assert made == "pay_" + "0" * 7 + "0" * 4 + ids._ALPHABET[:11]
