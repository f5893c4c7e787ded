"""The bench's CPU meter: a process tree's CPU seconds, and the share of them spent in the kernel, read from
/proc for processes that are still running when the window ends."""

from __future__ import annotations

import os
import subprocess
import sys

from loadtest.bench import CpuMeter

# Busy for half a second, then says so and waits to be stopped (a process that has exited is gone from /proc).
BUSY = ("import os, time\n{setup}\nend = time.time() + 0.5\nwhile time.time() < end: {work}\n"
        "print('done', flush=True)\ntime.sleep(60)")
SYSCALLS = BUSY.format(setup="zero = os.open('/dev/zero', os.O_RDONLY)", work="os.read(zero, 1 << 20)")
ARITHMETIC = BUSY.format(setup="n = 0", work="n += 1")


def measured(code: str) -> tuple[float, float]:
    meter = CpuMeter({"tree": os.getpid()})
    meter.begin()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        cpu = meter.end()
    finally:
        child.kill()
        child.wait()
    return cpu["tree"], meter.kernel_s["tree"]


def test_a_process_in_system_calls_spends_its_time_in_the_kernel() -> None:
    cpu, kernel = measured(SYSCALLS)
    assert cpu >= 0.3 and 0.5 * cpu <= kernel <= cpu


def test_a_process_in_its_own_code_spends_little_in_the_kernel() -> None:
    cpu, kernel = measured(ARITHMETIC)
    assert cpu >= 0.3 and kernel <= 0.3 * cpu
