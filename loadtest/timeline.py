"""The per-second timeline of a `make bench` run, and its picture.

Each second of the measured run keeps its approved and failed counts, a histogram of its latencies (fixed
logarithmic buckets, so its memory does not grow with the throughput) and the CPU each process tree used.
`per_second` turns that into figures; `draw` makes a PNG of them with matplotlib (Agg, no display).
"""

from __future__ import annotations

import math
import os
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Latency buckets grow by 5 % from 10 µs to past the bench's 10 s request timeout: a percentile read from
# them is within 2.5 % of the exact one, and a second costs BUCKET_COUNT counters whatever the load.
BUCKET_LOW_MS = 0.01
BUCKET_GROWTH = 1.05
BUCKET_COUNT = 330
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
# A process keeps its colour from run to run and column to column, whatever its rank in CPU.
CPU_COLORS = {"switch": "tab:blue", "postgres": "tab:orange", "simulator": "tab:green", "vault": "tab:red",
              "redis": "tab:brown", "loadgen": "tab:purple"}


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket holding `latency_ms` (the first and last buckets take everything beyond)."""
    if latency_ms <= BUCKET_LOW_MS:
        return 0
    return min(BUCKET_COUNT - 1, int(math.log(latency_ms / BUCKET_LOW_MS, BUCKET_GROWTH)))


def bucket_middle_ms(bucket: int) -> float:
    """The geometric middle of a bucket: the value a percentile falling in it is reported as."""
    return float(BUCKET_LOW_MS * BUCKET_GROWTH ** (bucket + 0.5))


@dataclass
class Second:
    approved: int = 0
    errors: int = 0
    latency_counts: array[int] = field(default_factory=lambda: array("I", bytes(4 * BUCKET_COUNT)))


@dataclass
class CpuSample:
    """The CPU seconds each process tree used between the previous sample and `end_s` (run time)."""

    end_s: float
    width_s: float
    cpu_s: dict[str, float]


@dataclass
class SecondFigures:
    start_s: float
    width_s: float
    payments_per_s: float
    errors_per_s: float
    latency_ms: dict[str, float]


class Timeline:
    """Counts per second of the measured run. Its size is fixed when it is made (`seconds_max` seconds;
    anything later counts in the last one), so a long run cannot grow it."""

    def __init__(self, seconds_max: int) -> None:
        assert seconds_max > 0
        self.origin_s = time.perf_counter()
        self.seconds = [Second() for _ in range(seconds_max)]
        self.cpu_samples: list[CpuSample] = []
        # The machine probe's seconds (loadtest.machine): (run second, the fixed work's CPU ms).
        self.machine_samples: list[tuple[float, float]] = []

    def start(self) -> None:
        """Second 0 begins now (the run starts right after)."""
        self.origin_s = time.perf_counter()

    def now_s(self) -> float:
        return time.perf_counter() - self.origin_s

    def add(self, latency_s: float | None, approved: bool, at_s: float | None = None) -> None:
        """One answer (`latency_s`) or failure without one (None), at `at_s` into the run (default now)."""
        at_s = self.now_s() if at_s is None else at_s
        second = self.seconds[min(len(self.seconds) - 1, max(0, int(at_s)))]
        second.approved += approved
        second.errors += not approved
        if latency_s is not None:
            second.latency_counts[bucket_of(latency_s * 1000)] += 1

    def add_cpu(self, end_s: float, width_s: float, cpu_s: dict[str, float]) -> None:
        """A CPU sample. One shorter than half a second (the run's last) joins the one before: CPU time comes
        in clock ticks of 10 ms, too coarse to read as a rate over a short span."""
        if width_s < 0.5 and self.cpu_samples:
            last = self.cpu_samples[-1]
            merged = {name: last.cpu_s.get(name, 0.0) + cpu_s.get(name, 0.0) for name in {*last.cpu_s, *cpu_s}}
            self.cpu_samples[-1] = CpuSample(end_s, last.width_s + width_s, merged)
        elif len(self.cpu_samples) <= len(self.seconds):
            # One sample a second, so as many as there are seconds (and a last, partial one) at most.
            self.cpu_samples.append(CpuSample(end_s, width_s, cpu_s))


def histogram_percentile_ms(counts: array[int], fraction: float) -> float:
    """The `fraction` percentile of a latency histogram, ranked as bench.percentile_ms ranks a sorted list."""
    total = sum(counts)
    if not total:
        return math.nan
    rank, seen = min(total - 1, int(fraction * total)), 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen > rank:
            return bucket_middle_ms(bucket)
    raise AssertionError("the rank is below the total")


def per_second(timeline: Timeline, elapsed_s: float) -> list[SecondFigures]:
    """Throughput and latency percentiles of each second up to `elapsed_s`. A last, partial second shorter
    than half a second joins the one before: the few answers of a short tail would read as a spike."""
    spans = [(index, min(1.0, elapsed_s - index)) for index in range(min(len(timeline.seconds),
                                                                         math.ceil(elapsed_s)))]
    if len(spans) > 1 and spans[-1][1] < 0.5:
        spans[-2:] = [(spans[-2][0], 1.0 + spans[-1][1])]
    return [_figures(timeline.seconds[start:start + math.ceil(width_s)], start, width_s)
            for start, width_s in spans]


def per_window(timeline: Timeline, elapsed_s: float, window_s: int = 10) -> list[SecondFigures]:
    """As per_second, over windows of `window_s` seconds (a last window shorter than half of one joins the
    one before): the figures the bench prints, so decay over a long run shows in its output."""
    starts = list(range(0, min(len(timeline.seconds), math.ceil(elapsed_s)), window_s))
    spans = [(start, min(float(window_s), elapsed_s - start)) for start in starts]
    if len(spans) > 1 and spans[-1][1] < window_s / 2:
        spans[-2:] = [(spans[-2][0], spans[-2][1] + spans[-1][1])]
    return [_figures(timeline.seconds[start:start + math.ceil(width_s)], start, width_s) for start, width_s in spans]


def cpu_per_payment_us(timeline: Timeline, figures: SecondFigures) -> float:
    """Machine CPU per approved payment in a window, from the CPU samples that ended in it."""
    approved = figures.payments_per_s * figures.width_s
    return sum(cpu_per_payment_by_process_us(timeline, figures).values()) if approved else math.nan


def cpu_per_payment_by_process_us(timeline: Timeline, figures: SecondFigures) -> dict[str, float]:
    """Each process tree's CPU per approved payment in a window (NaN for a window without one), from the CPU
    samples that ended in it: which process a decay over a long run is in."""
    end_s = figures.start_s + figures.width_s
    cpu_s: dict[str, float] = {}
    for sample in timeline.cpu_samples:
        if figures.start_s + 0.5 < sample.end_s <= end_s + 0.5:
            for name, seconds in sample.cpu_s.items():
                cpu_s[name] = cpu_s.get(name, 0.0) + seconds
    approved = figures.payments_per_s * figures.width_s
    return {name: seconds / approved * 1e6 if approved else math.nan for name, seconds in cpu_s.items()}


def _figures(seconds: list[Second], start_s: float, width_s: float) -> SecondFigures:
    counts = array("I", (sum(column) for column in zip(*(each.latency_counts for each in seconds), strict=True)))
    latency_ms = {name: histogram_percentile_ms(counts, fraction) for name, fraction in PERCENTILES}
    approved, errors = sum(each.approved for each in seconds), sum(each.errors for each in seconds)
    return SecondFigures(start_s, width_s, approved / width_s, errors / width_s, latency_ms)


# ----- the picture -----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One measured run to draw: its label (e.g. the transport), timeline and totals."""

    label: str
    timeline: Timeline
    elapsed_s: float
    cpu_s: dict[str, float]
    approved: int
    kernel_s: dict[str, float] = field(default_factory=dict)     # of cpu_s, the seconds in the kernel


def draw(runs: list[Run], title: str, path: Path) -> None:
    """Throughput, latency percentiles and CPU per process tree against time, one column per run."""
    import matplotlib

    matplotlib.use("Agg")          # The bench runs on servers without a display.
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(3, len(runs), figsize=(11 * len(runs), 10.5), sharex="col", squeeze=False,
                                   layout="constrained")
    for column, run in enumerate(runs):
        figures = per_second(run.timeline, run.elapsed_s)
        _draw_throughput(axes[0][column], figures, run)
        _draw_latency(axes[1][column], figures)
        _draw_cpu(axes[2][column], run)
        axes[2][column].set_xlabel("time since the measured run started (s)")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _middles_s(figures: list[SecondFigures]) -> list[float]:
    return [each.start_s + each.width_s / 2 for each in figures]


def _draw_throughput(axis: Axes, figures: list[SecondFigures], run: Run) -> None:
    axis.plot(_middles_s(figures), [each.payments_per_s for each in figures], marker=".", label="approved")
    if any(each.errors_per_s for each in figures):
        axis.plot(_middles_s(figures), [each.errors_per_s for each in figures], marker=".",
                  color="tab:red", label="errors")
    mean_per_s = run.approved / run.elapsed_s if run.elapsed_s else 0.0
    axis.axhline(mean_per_s, color="tab:blue", linestyle="--", linewidth=1,
                 label=f"mean {mean_per_s:,.0f}/s")
    axis.set_title(f"{run.label}: throughput per second")
    axis.set_ylabel("payments/s")
    _finish(axis)


def _draw_latency(axis: Axes, figures: list[SecondFigures]) -> None:
    for name, _ in PERCENTILES:
        axis.plot(_middles_s(figures), [each.latency_ms[name] for each in figures], marker=".",
                  label=name)
    axis.set_title("latency percentiles per second")
    axis.set_ylabel("latency (ms)")
    _finish(axis)


def _draw_cpu(axis: Axes, run: Run) -> None:
    samples = run.timeline.cpu_samples
    middles_s = [sample.end_s - sample.width_s / 2 for sample in samples]
    for name in sorted(run.cpu_s, key=lambda name: -run.cpu_s[name]):
        percent = [100 * sample.cpu_s.get(name, 0.0) / sample.width_s for sample in samples]
        per_payment_us = _per_payment_us(run, run.cpu_s[name])
        axis.plot(middles_s, percent, marker=".", color=CPU_COLORS.get(name),
                  label=f"{name} ({per_payment_us:,.0f} µs/payment)")
    # The sum against the cores says whether the machine, rather than one process, was the limit.
    total = [100 * sum(sample.cpu_s.values()) / sample.width_s for sample in samples]
    axis.plot(middles_s, total, color="black", linestyle="--",
              label=f"total ({_per_payment_us(run, sum(run.cpu_s.values())):,.0f} µs/payment)")
    cores_percent = 100 * (os.cpu_count() or 1)
    axis.axhline(cores_percent, color="grey", linestyle=":", label=f"{os.cpu_count()} cores")
    axis.set_title("CPU per process tree (100 % = one core)")
    axis.set_ylabel("CPU (% of one core)")
    _finish(axis)
    axis.set_ylim(top=max(axis.get_ylim()[1], 1.08 * cores_percent))


def _per_payment_us(run: Run, cpu_s: float) -> float:
    return cpu_s / run.approved * 1e6 if run.approved else 0.0


def _finish(axis: Axes) -> None:
    # Legends sit right of the panels, where no line can run under them.
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
