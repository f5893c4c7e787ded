"""running_loop(): asyncio's running loop, asked of asyncio once per loop and thread, never a stale one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from switch.common import loops
from switch.common.loops import running_loop


def test_outside_a_loop_it_raises_as_asyncio_does() -> None:
    with pytest.raises(RuntimeError):
        running_loop()


def test_each_loop_is_its_own_and_asyncio_is_asked_once_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[asyncio.AbstractEventLoop] = []
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        asked.append(real())
        return asked[-1]

    monkeypatch.setattr(loops.asyncio, "get_running_loop", counting)

    async def three_times() -> tuple[bool, asyncio.AbstractEventLoop]:
        found = [running_loop() for _ in range(3)]
        await asyncio.sleep(0)
        found.append(running_loop())
        return all(loop is real() for loop in found), found[0]

    first_ok, first = asyncio.run(three_times())
    second_ok, second = asyncio.run(three_times())        # a new loop: the closed one is not answered
    assert first_ok and second_ok and first is not second
    assert asked == [first, second]


def test_another_thread_finds_its_own_loop() -> None:
    async def found() -> bool:
        return running_loop() is asyncio.get_running_loop()

    answers: list[bool] = []

    def in_thread() -> None:
        answers.append(asyncio.run(found()))

    async def main() -> bool:
        mine = running_loop()
        thread = threading.Thread(target=in_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        return running_loop() is mine

    assert asyncio.run(main()) and answers == [True]
