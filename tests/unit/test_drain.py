"""A stopping worker's drain (switch.common.drain): it waits for what runs, at most its bound, and closes
the connections as they come idle."""

from __future__ import annotations

import asyncio

from switch.common.drain import Drain


class Recorded:
    def __init__(self) -> None:
        self.asked = 0

    def close_when_idle(self) -> None:
        self.asked += 1


async def test_stop_waits_for_the_requests_running_then_answers_none_left() -> None:
    drain = Drain()
    connection = Recorded()
    drain.connections.add(connection)
    drain.began()
    drain.began()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, drain.ended)
    loop.call_later(0.10, drain.ended)
    started = loop.time()
    assert await drain.stop(5.0) == 0
    assert 0.09 <= loop.time() - started < 4.0          # waited for the second, not for the bound
    assert drain.stopping and connection.asked == 1


async def test_stop_gives_up_after_its_bound_and_says_how_many_still_run() -> None:
    drain = Drain()
    drain.began()
    assert await drain.stop(0.05) == 1


async def test_an_idle_worker_stops_at_once() -> None:
    assert await Drain().stop(5.0) == 0
