"""The screen's policy cache: concurrent screens of a merchant share one load; past its TTL the copy in
hand is answered while one load refreshes it; a merchant whose rules changed here waits for the new
ones; a failed load is not retried by every screen. A fake pool counts the loads (no Postgres needed:
this is the cache's logic, the loads themselves are covered by the integration tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from switch.fraud import screen as screen_module
from switch.fraud.screen import PolicyUnavailable, Screener


class FakePool:
    def __init__(self) -> None:
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False
        self.version = 1

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        self.loads += 1
        await self.gate.wait()
        if self.failing:
            raise asyncpg.InterfaceError("Postgres is away")
        return {"version": self.version, "rules": [], "fail_closed": False, "actor": "t", "created_at": None}

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return []


class NoCommands:
    def register_script(self, script: str) -> str:
        return "sha"


def _screener(pool: FakePool) -> Screener:
    return Screener(pool, NoCommands(), b"k" * 32)  # type: ignore[arg-type]


async def test_concurrent_screens_share_one_load() -> None:
    pool = FakePool()
    pool.gate.clear()
    screener = _screener(pool)
    waiting = [asyncio.ensure_future(screener.policy_for("acct_1")) for _ in range(50)]
    await asyncio.sleep(0.01)
    pool.gate.set()
    policies = await asyncio.gather(*waiting)
    assert pool.loads == 1 and {p.version for p in policies} == {1}


async def test_an_expired_copy_is_answered_while_one_load_refreshes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = FakePool()
    screener = _screener(pool)
    await screener.policy_for("acct_1")
    screener.policies.store("acct_1", None)        # as if the TTL had passed
    pool.version, pool.gate = 2, asyncio.Event()   # the refresh will hang until released
    answered = [await screener.policy_for("acct_1") for _ in range(20)]
    await asyncio.sleep(0.01)
    assert {p.version for p in answered} == {1} and pool.loads == 2     # no screen waited; one refresh
    pool.gate.set()
    await asyncio.sleep(0.01)
    assert (await screener.policy_for("acct_1")).version == 2


async def test_rules_changed_here_are_waited_for() -> None:
    pool = FakePool()
    screener = _screener(pool)
    await screener.policy_for("acct_1")
    pool.version = 3
    screener.forget("acct_1")
    assert (await screener.policy_for("acct_1")).version == 3


async def test_a_failed_load_is_not_retried_by_every_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = FakePool()
    pool.failing = True
    screener = _screener(pool)
    for _ in range(10):
        with pytest.raises((PolicyUnavailable, asyncpg.InterfaceError)):
            await screener.policy_for("acct_1")
    assert pool.loads == 1
    monkeypatch.setattr(screen_module.time, "monotonic", lambda: 1e12)   # past the retry delay
    pool.failing = False
    assert (await screener.policy_for("acct_1")).version == 1 and pool.loads == 2
