"""The bench's timeline: per-second throughput and latency percentiles from bounded histograms, and its PNG."""

import math

import pytest

from loadtest import timeline
from loadtest.bench import percentile_ms
from loadtest.timeline import Run, Timeline, per_second


def test_each_second_has_its_throughput_and_percentiles():
    line = Timeline(seconds_max=5)
    for latency_ms in range(1, 101):            # second 0: 100 answers of 1 to 100 ms
        line.add(latency_ms / 1000, approved=True, at_s=0.5)
    for _ in range(40):                          # second 1: 40 answers of 200 ms, 10 of them declined
        line.add(0.2, approved=True, at_s=1.2)
    for _ in range(10):
        line.add(0.2, approved=False, at_s=1.7)
    line.add(None, approved=False, at_s=1.9)     # a timeout: an error without a latency
    first, second = per_second(line, elapsed_s=2.0)
    assert (first.payments_per_s, first.errors_per_s) == (100, 0)
    assert (second.payments_per_s, second.errors_per_s) == (40, 11)
    exact = sorted(ms / 1000 for ms in range(1, 101))
    for name, fraction in timeline.PERCENTILES:
        assert first.latency_ms[name] == pytest.approx(percentile_ms(exact, fraction), rel=0.03)
        assert second.latency_ms[name] == pytest.approx(200, rel=0.03)


def test_a_short_last_second_joins_the_one_before():
    line = Timeline(seconds_max=5)
    for at_s in (0.5, 1.5, 2.1, 2.2):
        line.add(0.01, approved=True, at_s=at_s)
    figures = per_second(line, elapsed_s=2.25)
    assert [(each.start_s, each.width_s) for each in figures] == [(0, 1.0), (1, 1.25)]
    assert figures[-1].payments_per_s == pytest.approx(3 / 1.25)


def test_the_timeline_does_not_grow_past_its_seconds():
    line = Timeline(seconds_max=3)
    for at_s in range(100):
        line.add(0.01, approved=True, at_s=at_s)
        line.add_cpu(at_s + 1.0, 1.0, {"switch": 0.5})
    assert len(line.seconds) == 3 and line.seconds[-1].approved == 98
    assert len(line.cpu_samples) == 4


def test_a_short_last_cpu_sample_joins_the_one_before():
    line = Timeline(seconds_max=3)
    line.add_cpu(1.0, 1.0, {"switch": 0.5})
    line.add_cpu(1.1, 0.1, {"switch": 0.04, "postgres": 0.01})
    (sample,) = line.cpu_samples
    assert (sample.end_s, sample.width_s) == (1.1, pytest.approx(1.1))
    assert sample.cpu_s == {"switch": pytest.approx(0.54), "postgres": 0.01}


def test_a_second_without_answers_has_no_percentiles():
    (figures,) = per_second(Timeline(seconds_max=1), elapsed_s=1.0)
    assert figures.payments_per_s == 0 and math.isnan(figures.latency_ms["p99"])


def test_the_picture_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    line = Timeline(seconds_max=3)
    for at_s in (0.5, 1.5, 2.5):
        line.add(0.01, approved=True, at_s=at_s)
        line.add_cpu(at_s + 0.5, 1.0, {"switch": 0.5, "loadgen": 0.2})
    path = tmp_path / "bench.png"
    timeline.draw([Run("http", line, 3.0, {"switch": 1.5, "loadgen": 0.6}, 3)], "a test run", path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_windows_of_ten_seconds_with_their_cpu_per_payment():
    line = Timeline(seconds_max=30)
    for second in range(23):
        for _ in range(100 if second < 10 else 50):          # the rate halves after 10 s
            line.add(0.02, approved=True, at_s=second + 0.5)
        line.add_cpu(second + 1.0, 1.0, {"switch": 0.05, "postgres": 0.05})
    windows = timeline.per_window(line, elapsed_s=23.0)
    assert [(each.start_s, each.width_s) for each in windows] == [(0, 10.0), (10, 13.0)]   # 3 s join the last
    assert [each.payments_per_s for each in windows] == [100, 50]
    assert timeline.cpu_per_payment_us(line, windows[0]) == pytest.approx(0.1 / 100 * 1e6)   # 1,000 µs
    assert timeline.cpu_per_payment_us(line, windows[1]) == pytest.approx(0.1 / 50 * 1e6)    # 2,000 µs
    by_process = timeline.cpu_per_payment_by_process_us(line, windows[1])
    assert by_process == {"switch": pytest.approx(0.05 / 50 * 1e6), "postgres": pytest.approx(0.05 / 50 * 1e6)}
