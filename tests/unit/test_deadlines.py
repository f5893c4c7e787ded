"""Deadlines swept by one timer (switch.common.deadlines): each fires once, in time and at most a sweep late,
a cancelled one never, and what a cancelled one held is let go at once."""

from __future__ import annotations

import asyncio
import gc
import weakref

from switch.common.deadlines import RESOLUTION_S, Deadlines


async def test_deadlines_fire_in_time_once_and_cancelled_ones_never() -> None:
    loop = asyncio.get_running_loop()
    deadlines, fired = Deadlines(), []
    started = loop.time()
    for timeout_s in (0.05, 0.0, 0.12, 0.03, 0.03):
        deadlines.after(timeout_s, lambda t=timeout_s: fired.append((t, loop.time() - started)))
    cancelled = deadlines.after(0.04, fired.append, "cancelled")
    cancelled.cancel()
    await asyncio.sleep(0.25)
    assert [timeout for timeout, _ in fired] == [0.0, 0.03, 0.03, 0.05, 0.12]
    for timeout_s, after_s in fired:
        assert timeout_s <= after_s < timeout_s + RESOLUTION_S + 0.05
    assert deadlines.filed() == 0 and not deadlines.wheel.sweeping      # nothing filed: no timer


async def test_a_deadline_already_passed_fires_before_anything_answered_after_it() -> None:
    # A spent budget times out at once (on the loop's next pass), not a sweep later.
    deadlines, order = Deadlines(), []
    deadlines.after(0.0, order.append, "deadline")
    deadlines.after(-1.0, order.append, "past deadline")
    asyncio.get_running_loop().call_later(0.002, order.append, "answer")
    cancelled = deadlines.after(0.0, order.append, "cancelled")
    cancelled.cancel()
    await asyncio.sleep(0.05)
    assert order == ["deadline", "past deadline", "answer"]


async def test_a_cancelled_deadline_lets_go_of_what_it_held() -> None:
    class Answer:
        pass

    deadlines = Deadlines()
    answer = Answer()
    held = weakref.ref(answer)
    deadline = deadlines.after(60.0, print, answer)
    del answer
    gc.collect()
    assert held() is not None
    deadline.cancel()
    gc.collect()
    assert held() is None


async def test_a_callback_that_fails_does_not_stop_the_others() -> None:
    deadlines, fired = Deadlines(), []
    deadlines.after(0.0, lambda: 1 / 0)
    deadlines.after(0.0, fired.append, "second")
    await asyncio.sleep(0.05)
    assert fired == ["second"]


async def test_a_wait_in_one_loop_is_not_dropped_by_another_loop_using_the_same_deadlines() -> None:
    # The session's loop files a deadline, a second loop (asyncio.run in a thread, as a tool would) files
    # and sweeps its own, and the first loop's still fires: a wheel for each loop.
    import threading

    deadlines, fired = Deadlines(), []
    deadlines.after(0.1, fired.append, "this loop")

    async def other() -> None:
        deadlines.after(0.01, fired.append, "other loop")
        await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(other(),))
    thread.start()
    thread.join()
    await asyncio.sleep(0.15)
    assert fired == ["other loop", "this loop"] and deadlines.filed() == 0


async def test_the_hot_paths_owners_share_one_sweeper_per_thread() -> None:
    # A sweeper each (vault client, every network link, the webhooks' connections) cost more than the
    # timers they saved: they share this thread's.
    import threading

    from switch.common import deadlines

    others: list[Deadlines] = []
    thread = threading.Thread(target=lambda: others.append(deadlines.shared()))
    thread.start()
    thread.join()
    assert deadlines.shared() is deadlines.shared() and others[0] is not deadlines.shared()


async def test_a_clock_that_jumps_far_ahead_and_back_is_swept_in_bounded_work(monkeypatch) -> None:
    # A test elsewhere fakes time.monotonic (the asyncio loop's clock) 1e12 s ahead: the sweep must not walk
    # a hundred trillion empty slots, and once the clock is back, deadlines filed then still fire.
    import time as time_module

    deadlines, fired = Deadlines(), []
    deadlines.after(30.0, fired.append, "due before the jump's end")
    real = time_module.monotonic
    monkeypatch.setattr(time_module, "monotonic", lambda: real() + 1e12)
    await asyncio.sleep(0.05)
    deadlines.after(60.0, fired.append, "filed in the jump")    # its sweep is due on the jumped clock
    await asyncio.sleep(0.02)
    monkeypatch.setattr(time_module, "monotonic", real)
    deadlines.after(0.02, fired.append, "filed after it")
    await asyncio.sleep(0.1)
    assert fired == ["due before the jump's end", "filed after it"]
