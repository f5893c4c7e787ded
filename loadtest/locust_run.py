"""`make locust`: the Locust Black-Friday shape (loadtest/locustfile.py) run headless against a local stack.

Starts the whole stack as `make bench` does (one switch worker for every two cores, the rate limits raised,
the fraud screen acting on its lists only), runs Locust in a subprocess on loopback with BLACK_FRIDAY_SCALE
(--scale), and keeps its CSV and HTML reports in .run/locust-<UTC time>/ (with Locust's own log, locust.log). Prints the
requests, failures and latency from Locust's `_stats.csv`, the requests/s of each stage of the shape from
`_stats_history.csv`, and the CPU seconds each process tree used during the run (switch, vault, simulator,
Postgres, Redis, Locust), per successful payment. The stack is always stopped. The last line is:

    LOCUST requests=<n> failures=<k> rps=<x> p99_ms=<y> report=<html path>

Locust ignores --run-time while a LoadTestShape drives it (the shape ends the run by itself), so the cap
is kept here: past the shape's length plus --grace-s, Locust is interrupted (it still writes its
reports), then killed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.bench import RUN_DIR, CpuMeter, stack_roots
from loadtest.stacks import run_on_stack

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# 0.6 of the 5-minute shape: a 3-minute run, at most 360 users, on the 2-core machine of docs/performance.md.
DEFAULT_SCALE = 0.6


# ----- the shape, read from the locustfile (importing it would import Locust, which monkey-patches) --------

def shape_stages(source: str) -> list[tuple[float, int, float]]:
    """The BlackFriday shape's `stages` (end time s, users, spawn rate/s), read from the locustfile's source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "BlackFriday":
            for statement in node.body:
                if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                        and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "stages"):
                    return [(float(end), int(users), float(rate))
                            for end, users, rate in ast.literal_eval(statement.value)]
    raise ValueError("no BlackFriday.stages in the locustfile")


# ----- Locust's CSV reports ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    method: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Summary:
    aggregated: Row
    rows: list[Row]

    @property
    def payments_ok(self) -> int:
        """Payment requests (POST /v1/payments, the first card payment of each user included) that Locust
        counted as successes: approved, or declined with 402 (a correct answer, see the locustfile)."""
        return sum(row.requests - row.failures for row in self.rows
                   if row.method == "POST" and row.name.startswith("/v1/payments"))


def _ms(value: str) -> float:
    return float(value) if value not in ("", "N/A") else 0.0


def parse_stats(lines: Iterable[str]) -> Summary:
    """Locust's `<prefix>_stats.csv`: one row per request name, then the `Aggregated` row."""
    rows, aggregated = [], None
    for record in csv.DictReader(lines):
        row = Row(record["Type"], record["Name"], int(record["Request Count"]), int(record["Failure Count"]),
                  float(record["Requests/s"]), _ms(record["50%"]), _ms(record["95%"]), _ms(record["99%"]))
        if row.name == "Aggregated" and not row.method:
            aggregated = row
        else:
            rows.append(row)
    if aggregated is None:
        raise ValueError("no Aggregated row in the stats CSV")
    return Summary(aggregated, rows)


@dataclass(frozen=True)
class StageRate:
    start_s: float
    end_s: float
    users: int          # the shape's target
    users_end: int      # the users Locust reported running at the stage's end
    requests: int
    failures: int

    @property
    def rps(self) -> float:
        return self.requests / (self.end_s - self.start_s) if self.end_s > self.start_s else 0.0


def stage_rates(lines: Iterable[str], stages: list[tuple[float, int, float]], scale: float) -> list[StageRate]:
    """Requests and failures in each stage of the shape, from the running totals of `<prefix>_stats_history.csv`
    (one `Aggregated` row a second). Time counts from its first row, so a stage's edges are good to about a
    second; the last stage runs to the last row."""
    points = [(int(record["Timestamp"]), int(record["User Count"]), int(record["Total Request Count"]),
               int(record["Total Failure Count"]))
              for record in csv.DictReader(lines) if record["Name"] == "Aggregated"]
    if not points:
        return []
    first = points[0][0]
    result, start_s, before = [], 0.0, (0, 0)
    for index, (end, users, _) in enumerate(stages):
        # A stage covers (start_s, end_s]; the last one runs to the last row, wherever the shape stopped.
        last = index == len(stages) - 1
        end_s = max(start_s, float(points[-1][0] - first)) if last else end * scale
        upto = [point for point in points if point[0] - first <= end_s]
        totals = (upto[-1][2], upto[-1][3]) if upto else before
        result.append(StageRate(start_s, end_s, max(1, round(users * scale)),
                                upto[-1][1] if upto else 0,
                                totals[0] - before[0], totals[1] - before[1]))
        start_s, before = end_s, totals
    return result


# ----- the run -------------------------------------------------------------------------------------------

def children_cpu_s() -> float:
    """CPU seconds of this process's children that have been waited for. Locust's own CPU is read so: it
    leaves /proc when it exits, before the meter's last look."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_locust(url: str, api_key: str, report_dir: Path, scale: float, cap_s: float) -> tuple[int, float]:
    """Locust headless until its shape ends (at most `cap_s`); returns its exit code and elapsed seconds."""
    prefix = report_dir / "locust"
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "--csv", str(prefix), "--html", str(report_dir / "locust.html"), "--only-summary"]
    env = {**os.environ, "SWITCH_API_KEY": api_key, "BLACK_FRIDAY_SCALE": str(scale)}
    started = time.monotonic()
    with open(report_dir / "locust.log", "wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=report_dir)
        try:
            code = process.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            print(f"locust_run: Locust still running after {cap_s:.0f} s; interrupting it", file=sys.stderr)
            process.send_signal(signal.SIGINT)      # Locust writes its reports on the way out
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            code = -1
        except BaseException:
            process.kill()
            process.wait()
            raise
    return code, time.monotonic() - started


def report(summary: Summary, rates: list[StageRate], cpu: dict[str, float], elapsed_s: float,
           html: Path) -> None:
    agg = summary.aggregated
    ok = summary.payments_ok
    print(f"\n{agg.requests} requests in {elapsed_s:.1f} s of Locust ({agg.rps:,.0f}/s), {agg.failures} failures; "
          f"{ok} successful payments")
    print(f"latency ms (Locust's rounding): p50 {agg.p50_ms:.0f}  p95 {agg.p95_ms:.0f}  p99 {agg.p99_ms:.0f}")
    for row in summary.rows:
        print(f"  {row.method:<5} {row.name:<22} {row.requests:8} requests {row.failures:6} failures "
              f"{row.rps:8,.0f}/s  p50 {row.p50_ms:5.0f}  p99 {row.p99_ms:5.0f} ms")
    if rates:
        print("per stage of the shape:")
        for rate in rates:
            print(f"  {rate.start_s:5.0f}-{rate.end_s:<5.0f} s  users {rate.users:4} (at its end {rate.users_end:4})  "
                  f"{rate.requests:8} requests  {rate.rps:7,.0f}/s  failures {rate.failures}")
    print("CPU seconds during the run (and µs per successful payment):")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"  {name:<10} {seconds:7.2f} s   {seconds / ok * 1e6 if ok else 0:8.0f} µs/payment")
    total, cores = sum(cpu.values()), os.cpu_count() or 1
    print(f"  {'total':<10} {total:7.2f} s   {total / ok * 1e6 if ok else 0:8.0f} µs/payment "
          f"(of {cores} cores x {elapsed_s:.1f} s = {cores * elapsed_s:.1f} s)")
    print(f"LOCUST requests={agg.requests} failures={agg.failures} rps={agg.rps:.0f} p99_ms={agg.p99_ms:.0f} "
          f"report={html}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from switch.dev.devstack import co_located_workers

    parser = argparse.ArgumentParser(prog="python -m loadtest.locust_run", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help=f"BLACK_FRIDAY_SCALE: the shape's length and users (default {DEFAULT_SCALE}: about "
                             "3 minutes on 2 cores; 0.1 for a 30 s smoke run)")
    parser.add_argument("--workers", type=int, default=co_located_workers(),
                        help="switch workers (default: half the cores, at least one)")
    parser.add_argument("--grace-s", type=float, default=60.0,
                        help="how long past the shape's end Locust may take before it is interrupted")
    parser.add_argument("--keep-run-dir", action="store_true",
                        help="keep the stack's logs and throwaway keys under .run/ (the reports are always kept)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    stages = shape_stages(LOCUSTFILE.read_text())
    cap_s = max(end for end, _, _ in stages) * args.scale + args.grace_s
    report_dir = RUN_DIR / f"locust-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    report_dir.mkdir(parents=True, exist_ok=True)

    from switch.dev.devstack import Stack, new_run_dir

    # As the bench: limits far above what Locust sends from one address and key, and the screen acting on
    # its lists only (every user pays with the same card).
    stack = Stack(run_dir=new_run_dir(), address_rate_limit_per_s=1_000_000,
                  merchant_rate_limit_per_s=1_000_000, fraud_rules="lists")
    ran: dict[str, Any] = {}

    def body(stack: Stack) -> int:
        print(f"Locust, scale {args.scale}: {cap_s - args.grace_s:.0f} s of shape, reports in {report_dir}",
              flush=True)
        meter = CpuMeter(stack_roots(stack))
        meter.begin()
        children_before = children_cpu_s()
        ran["code"], ran["elapsed_s"] = run_locust(stack.switch_url, stack.api_key, report_dir, args.scale, cap_s)
        ran["cpu"] = meter.end()
        ran["cpu"]["locust"] = children_cpu_s() - children_before
        return 0

    if run_on_stack("locust_run", stack, lambda stack: stack.start_all(workers=args.workers), body,
                    keep_run_dir=args.keep_run_dir):
        return 1
    code, elapsed_s, cpu = ran["code"], ran["elapsed_s"], ran["cpu"]
    stats_path = report_dir / "locust_stats.csv"
    if not stats_path.exists():
        print(f"locust_run: Locust exited with {code} and wrote no stats; see {report_dir / 'locust.log'}",
              file=sys.stderr)
        return 1
    with open(stats_path, newline="") as handle:
        summary = parse_stats(handle)
    with open(report_dir / "locust_stats_history.csv", newline="") as handle:
        rates = stage_rates(handle, stages, args.scale)
    if code not in (0, 1):      # 1: the run had failures, which the summary shows
        print(f"locust_run: Locust exited with {code}; see {report_dir / 'locust.log'}", file=sys.stderr)
    report(summary, rates, cpu, elapsed_s, report_dir / "locust.html")
    return 0 if code in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
