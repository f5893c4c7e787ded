"""`make bench BENCH_ARGS=--steps`: the switch's CPU per pipeline step during the measured run.

The switch is started with SWITCH_STEP_CPU=1 (switch.payments.step_cpu): every step's own code is timed
in thread CPU, what other tasks run while it waits excluded, and counted at /metrics. The bench reads the
counters before and after the measured window and prints, per operation, its runs and the µs a run of each
step, then how much of the switch's CPU a payment is spent inside steps at all (the rest: the HTTP edge,
the batched statements, the Redis, vault and network clients, webhook delivery). The counters reach
/metrics once a second, so each end of the window is up to a second off.
"""

from __future__ import annotations

import re
import urllib.request
from collections import defaultdict

Counters = dict[tuple[str, str], tuple[float, float]]       # (operation, step) -> (CPU seconds, calls)

_SAMPLE = re.compile(r'^switch_step_(cpu_seconds|calls)_total\{operation="([^"]+)",step="([^"]+)"\} (\S+)$')


def parse(text: str) -> Counters:
    """The step counters of one /metrics page."""
    found: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            kind, operation, step, value = match.groups()
            found[(operation, step)][0 if kind == "cpu_seconds" else 1] += float(value)
    return {key: (cpu, calls) for key, (cpu, calls) in found.items()}


def snapshot(ops_url: str) -> Counters:
    with urllib.request.urlopen(f"{ops_url}/metrics", timeout=5) as answer:   # noqa: S310 - loopback
        return parse(answer.read().decode())


def report(before: Counters, after: Counters, payments: int, switch_cpu_s: float) -> list[str]:
    """Per operation (most CPU first): its runs and each step's µs a run; then the steps' share."""
    spent = {key: (cpu - before.get(key, (0.0, 0.0))[0], calls - before.get(key, (0.0, 0.0))[1])
             for key, (cpu, calls) in after.items()}
    operations: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for (operation, step), (cpu, calls) in spent.items():
        if calls > 0:
            operations[operation].append((step, cpu, calls))
    lines = ["steps (thread CPU of each step's own code, in the measured window):"]
    total_s = 0.0
    for operation, steps in sorted(operations.items(), key=lambda item: -sum(cpu for _, cpu, _ in item[1])):
        runs = max(calls for _, _, calls in steps)
        cpu_s = sum(cpu for _, cpu, _ in steps)
        total_s += cpu_s
        lines.append(f"  {operation:16s} {runs:9,.0f} runs  {cpu_s / runs * 1e6:7.1f} µs a run")
        lines += [f"    {step:28s} {cpu / runs * 1e6:7.1f} µs" for step, cpu, _ in sorted(steps, key=lambda s: -s[1])]
    if payments:
        lines.append(f"  in steps: {total_s / payments * 1e6:.0f} µs a payment, of the switch's "
                     f"{switch_cpu_s / payments * 1e6:.0f}")
    return lines
