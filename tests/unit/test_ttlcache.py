"""TtlLru: entries expire, unknown keys are believed briefly, the least recently used goes first. Recent:
bounded in two generations, what is used stays."""

from switch.common import ttlcache
from switch.common.ttlcache import Recent, TtlLru


def test_entries_expire_and_unknown_keys_expire_sooner(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: now[0])
    cache: TtlLru[str, int] = TtlLru(ttl_s=30.0, size_max=10)
    cache.store("known", 1)
    cache.store("unknown", None)
    assert cache.lookup("known") == (True, 1) and cache.lookup("unknown") == (True, None)
    now[0] += ttlcache.UNKNOWN_TTL_S_MAX + 0.1
    assert cache.lookup("known") == (True, 1) and cache.lookup("unknown") == (False, None)
    now[0] += 30.0
    assert cache.lookup("known") == (False, None)


def test_the_least_recently_used_entry_is_evicted():
    cache: TtlLru[str, int] = TtlLru(ttl_s=30.0, size_max=2)
    cache.store("a", 1)
    cache.store("b", 2)
    assert cache.lookup("a") == (True, 1)      # "a" is now the most recently used
    cache.store("c", 3)
    assert len(cache) == 2
    assert cache.lookup("b") == (False, None) and cache.lookup("a") == (True, 1)


def test_recent_keeps_what_is_used_and_stays_bounded() -> None:
    recent: Recent[int, str] = Recent(generation_max=4)
    for key in range(4):
        recent.store(key, f"v{key}")
    assert len(recent) == 4                  # the first generation filled and became the older one
    assert recent.get(0) == "v0"             # read from the older generation: moved to the newer
    for key in range(10, 13):
        recent.store(key, f"v{key}")         # the newer fills (0, 10, 11, 12): the older (1, 2, 3) is dropped
    assert recent.get(0) == "v0" and recent.get(1) is None and recent.get(12) == "v12"
    for key in range(100, 1000):
        recent.store(key, "x")
        assert len(recent) <= 8
