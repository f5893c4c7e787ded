"""TtlLru: entries expire, unknown keys are believed briefly, the least recently used goes first."""

from switch.common import ttlcache
from switch.common.ttlcache import TtlLru


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
