"""The machine probe's arithmetic (loadtest.machine): a window's slowdown against the run's quietest seconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loadtest.machine import quiet_ms, slowdown


def test_the_reference_is_the_quietest_tenth_of_seconds() -> None:
    samples = [(float(second), 5.0 if second < 5 else 8.0) for second in range(50)]
    assert quiet_ms(samples) == 5.0
    assert quiet_ms([]) is None


def test_a_slow_episode_reads_as_its_factor_and_a_quiet_window_as_one() -> None:
    quiet = [(float(second), 4.0 + (second % 3) * 0.1) for second in range(0, 20)]
    slow = [(float(second), 6.4) for second in range(20, 30)]
    samples = quiet + slow
    assert slowdown(samples, 0, 10) == pytest.approx(1.0, abs=0.03)
    assert slowdown(samples, 20, 30) == pytest.approx(1.6)
    assert slowdown(samples, 15, 25) == pytest.approx((4.2 + 6.4) / 2 / 4.0)   # the median of a mixed window
    assert slowdown(samples, 40, 50) is None                                  # no sample there


def test_the_probe_prints_one_second_at_a_time_and_stops_by_itself() -> None:
    done = subprocess.run([sys.executable, "-m", "loadtest.machine", "--duration-s", "1.5"], capture_output=True,
                          text=True, timeout=30, check=True)
    lines = [line.split() for line in done.stdout.splitlines()]
    assert len(lines) == 2, done.stdout
    assert [float(at) < 1.5 for at, _ in lines] == [True, True]
    assert all(0 < float(ms) < 1000 for _, ms in lines)
