"""How fast the machine itself is, second by second, during a bench: a fixed piece of pure-Python work, timed
in its own thread's CPU time.

This machine is a small virtual one, and its host is shared. With nothing of ours running, the same work
takes 33-35 ms of CPU time in most seconds and 53-58 ms in others, for tens of seconds at a time: the
guest's CPU clock keeps running while the host holds its core back. Every process of the stack spends more
CPU a payment in those episodes, which a 10-minute soak shows as swings and a 15 s run as ±30 % between
runs. The probe runs beside the stack, in a process of its own that the bench's CPU figures do not count
(WORK_MS of CPU a second, a quarter of a percent of the machine), and the bench prints each window's factor
(its median against the run's quietest seconds) next to its CPU a payment, so a swing of the host tells
itself apart from one of ours.

    python -m loadtest.machine --duration-s 60     # one line a second: <seconds since start> <work CPU ms>
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WORK_MS = 5.0                   # about, on a quiet machine
ROUNDS = 48_000                 # the work's size: WORK_MS on this machine when its host is quiet
QUIET_FRACTION = 0.1            # the run's quietest tenth of seconds is its reference speed


def work(rounds: int = ROUNDS) -> int:
    """Dictionary reads and writes, integer arithmetic and calls: the kind of work the stack's Python does."""
    table: dict[int, int] = {}
    for i in range(rounds):
        key = i % 977
        table[key] = table.get(key, 0) + i * 3
    return sum(table.values())


def timed_ms() -> float:
    """The CPU time of one round of the work, in ms of this thread's own time."""
    started = time.thread_time()
    work()
    return (time.thread_time() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, required=True, help="stop after this long (at most a day)")
    args = parser.parse_args(argv)
    duration_s = min(max(args.duration_s, 0.0), 86_400.0)
    origin = time.monotonic()
    second = 0
    while (now := time.monotonic() - origin) < duration_s:
        print(f"{now:.3f} {timed_ms():.3f}", flush=True)
        second += 1
        time.sleep(max(0.0, second - (time.monotonic() - origin)))


@dataclass
class MachineProbe:
    """The probe as a child process of the bench, its seconds read as they come, each stamped with the
    bench's own clock (`clock`: seconds into the measured run)."""

    samples: list[tuple[float, float]] = field(default_factory=list)     # (run second, work CPU ms)
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None

    async def start(self, duration_s: float, clock: Callable[[], float]) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.machine", "--duration-s", str(duration_s),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.reader = asyncio.get_running_loop().create_task(self._read(clock))

    async def _read(self, clock: Callable[[], float]) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            fields = line.split()
            if len(fields) == 2:
                self.samples.append((clock(), float(fields[1])))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def quiet_ms(samples: list[tuple[float, float]]) -> float | None:
    """The run's reference: the median of its quietest QUIET_FRACTION of seconds (None: no samples)."""
    if not samples:
        return None
    ordered = sorted(ms for _, ms in samples)
    return statistics.median(ordered[:max(1, int(len(ordered) * QUIET_FRACTION))])


def slowdown(samples: list[tuple[float, float]], start_s: float, end_s: float) -> float | None:
    """How much slower the machine was between `start_s` and `end_s` than in the run's quietest seconds
    (1.0: as quiet; 1.6: the same work took 60 % more CPU time); None without samples there."""
    reference = quiet_ms(samples)
    inside = [ms for at_s, ms in samples if start_s <= at_s < end_s]
    if reference is None or not inside:
        return None
    return statistics.median(inside) / reference


if __name__ == "__main__":
    main()
