"""A bounded LRU whose entries expire: key lookups (API keys, publishable keys) that must not hit
Postgres on every request, yet must notice a revoked key within the TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")

UNKNOWN_TTL_S_MAX = 5.0     # how long "no such key" is believed: a key created just now works soon


class TtlLru(Generic[Key, Value]):
    """Key -> value or None ("unknown", kept for at most UNKNOWN_TTL_S_MAX); the least recently used goes
    first when full."""

    def __init__(self, ttl_s: float, size_max: int) -> None:
        self.ttl_s = ttl_s
        self.size_max = size_max
        self._entries: OrderedDict[Key, tuple[Value | None, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Key) -> tuple[bool, Value | None]:
        """(True, value) for a live entry, (False, None) when the caller must look it up."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return False, None
        self._entries.move_to_end(key)
        return True, entry[0]

    def store(self, key: Key, value: Value | None) -> None:
        ttl_s = self.ttl_s if value is not None else min(self.ttl_s, UNKNOWN_TTL_S_MAX)
        self._entries[key] = (value, time.monotonic() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size_max:
            self._entries.popitem(last=False)


class Recent(Generic[Key, Value]):
    """A bounded map of what was seen lately, for values that never go stale (a token's card identity): two
    generations of plain dicts, the older dropped whole when the newer fills. A store is one dict write
    (0.1 µs, where TtlLru's clock read and reordering took 2 µs); an entry read from the older generation
    moves to the newer, so what is used stays. At most 2 x `generation_max` entries."""

    def __init__(self, generation_max: int) -> None:
        self.generation_max = generation_max
        self._new: dict[Key, Value] = {}
        self._old: dict[Key, Value] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def get(self, key: Key) -> Value | None:
        value = self._new.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.store(key, value)
        return value

    def store(self, key: Key, value: Value) -> None:
        new = self._new
        new[key] = value
        if len(new) >= self.generation_max:
            self._old, self._new = new, {}
