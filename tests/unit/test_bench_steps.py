"""`make bench BENCH_ARGS=--steps`: the step counters read from /metrics and reported per run, only what
the measured window added."""

from __future__ import annotations

from loadtest import steps

PAGE = """# HELP switch_step_cpu_seconds_total Thread CPU time of each pipeline step's own code
switch_step_cpu_seconds_total{operation="authorize",step="send"} 3.0
switch_step_cpu_seconds_total{operation="authorize",step="lock"} 1.0
switch_step_calls_total{operation="authorize",step="send"} 30000.0
switch_step_calls_total{operation="authorize",step="lock"} 30000.0
switch_step_cpu_seconds_total{operation="capture",step="capture"} 2.0
switch_step_calls_total{operation="capture",step="capture"} 8000.0
switch_payments_total{operation="authorize",network="visa",result="succeeded"} 9.0
"""


def test_the_counters_are_read_by_operation_and_step() -> None:
    assert steps.parse(PAGE) == {("authorize", "send"): (3.0, 30000.0), ("authorize", "lock"): (1.0, 30000.0),
                                 ("capture", "capture"): (2.0, 8000.0)}


def test_the_report_counts_the_window_only_per_run_and_per_payment() -> None:
    before = {("authorize", "send"): (1.0, 10000.0), ("authorize", "lock"): (0.5, 10000.0)}
    lines = steps.report(before, steps.parse(PAGE), payments=20000, switch_cpu_s=12.0)
    assert lines[1].split() == ["authorize", "20,000", "runs", "125.0", "µs", "a", "run"]    # (2.0 + 0.5) / 20,000
    assert lines[2].split() == ["send", "100.0", "µs"] and lines[3].split() == ["lock", "25.0", "µs"]
    assert lines[4].split() == ["capture", "8,000", "runs", "250.0", "µs", "a", "run"]
    assert lines[-1].split() == ["in", "steps:", "225", "µs", "a", "payment,", "of", "the", "switch's", "600"]
