"""`make bench`: drive payments over HTTP and report throughput, latency and CPU per process.

Brings up the whole local stack (or uses a running one: --url and --api-key, e.g. from `make up`),
warms up, then runs N keep-alive connections for a fixed duration, bounded by both the duration and
--payments-max, each sending POST /v1/payments with a fresh Idempotency-Key. By default the payments are
the Black-Friday mix (loadtest/mix.py: first-time cards, saved tokens, declines, later captures, refunds)
with a webhook endpoint subscribed to every event. One path instead: --token (a vault token every time, as
merchants do after the first payment), --raw-card (card data, the same card every time; with --new-cards,
a new card number every payment). Prints payments/s, p50/p95/p99 latency, errors by status and the CPU
seconds each process tree used during the measured window, per 10 s windows too, and draws them second by
second in a PNG (loadtest/timeline.py; --plot PATH, --no-plot), named on a `PLOT path=<path>` line. A
payment counts when it is answered as expected (a decline card's 402 included). The last line is always:

    RESULT payments_per_s=<n> p50_ms=<x> p99_ms=<y> errors=<k>
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from loadtest import statements, steps
from loadtest.httpclient import Client
from loadtest.machine import MachineProbe, quiet_ms, slowdown
from loadtest.mix import EXPIRY, SAVED_CARDS, Mix, NewCards, Step, card_body
from loadtest.profile import Profiler
from loadtest.stacks import run_on_stack
from loadtest.timeline import Run, Timeline, cpu_per_payment_by_process_us, cpu_per_payment_us, draw, per_window
from switch.common import collector

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PYTHON_PROCESSES = ("switch", "vault", "simulator", "loadgen")       # what --profile samples
REQUEST_TIMEOUT_S = 10.0
RUN_DIR = Path(__file__).resolve().parent.parent / ".run"
TEST_CARD = {"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}


# ----- CPU accounting from /proc -------------------------------------------------------------------------

def _process_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (parent pid, CPU seconds used so far, of them in the kernel) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                             int(fields[12]) / CLOCK_TICKS)
    return table


def tree_cpu_s(root: int, table: dict[int, tuple[int, float, float]], kernel: bool = False) -> dict[int, float]:
    """CPU seconds of `root` and all its descendants, per pid (with `kernel`, only those in the kernel)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    result, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            result[pid] = table[pid][2 if kernel else 1]
        stack.extend(children.get(pid, ()))
    return result


class CpuMeter:
    """CPU per service: each root's whole process tree (Postgres backends, switch workers), except the
    load generator, which counts only itself (the stack it started is its children). Of it, the seconds
    spent in the kernel (`kernel_s`, after end()): sockets' sends and receives, wake-ups, page faults, where
    the rest is the process's own code."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.start: dict[str, dict[int, float]] = {}
        self.start_kernel: dict[str, dict[int, float]] = {}
        self.kernel_s: dict[str, float] = {}

    def _sample(self, name: str, pid: int, table: dict[int, tuple[int, float, float]],
                kernel: bool) -> dict[int, float]:
        if name == "loadgen":
            return {pid: table[pid][2 if kernel else 1]} if pid in table else {}
        return tree_cpu_s(pid, table, kernel)

    def snapshot(self, table: dict[int, tuple[int, float, float]] | None = None,
                 kernel: bool = False) -> dict[str, dict[int, float]]:
        """CPU seconds used so far (with `kernel`, in the kernel), per pid of each root's tree."""
        table = _process_table() if table is None else table
        return {name: self._sample(name, pid, table, kernel) for name, pid in self.roots.items()}

    def begin(self) -> None:
        table = _process_table()                 # one reading for both, so the kernel's share is of the same
        self.start, self.start_kernel = self.snapshot(table), self.snapshot(table, kernel=True)

    def end(self) -> dict[str, float]:
        """CPU seconds per process tree since begin() (processes born since then count from zero)."""
        table = _process_table()
        self.kernel_s = cpu_used_s(self.start_kernel, self.snapshot(table, kernel=True))
        return cpu_used_s(self.start, self.snapshot(table))


def cpu_used_s(before: dict[str, dict[int, float]], now: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per process tree between two snapshots (processes born in between count from zero)."""
    return {name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in now.items()}


class CpuSampler:
    """Takes the meter's snapshot once a second of the run into the timeline. A snapshot reads /proc/<pid>/stat
    of every process, about a millisecond for a hundred: cheap enough to do on the event loop, where a thread
    would only contend with it for the GIL."""

    def __init__(self, meter: CpuMeter, timeline: Timeline) -> None:
        self.meter, self.timeline = meter, timeline
        self.previous, self.previous_s = meter.start, 0.0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._each_second())

    async def stop(self) -> None:
        """Stop sampling, and take the last (partial) second."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self._sample()

    async def _each_second(self) -> None:
        # Sleeping to the next whole second of the run, not for a second, keeps the samples from drifting.
        for second in range(1, len(self.timeline.seconds) + 1):
            await asyncio.sleep(max(0.0, second - self.timeline.now_s()))
            self._sample()

    def _sample(self) -> None:
        now, now_s = self.meter.snapshot(), self.timeline.now_s()
        self.timeline.add_cpu(now_s, now_s - self.previous_s, cpu_used_s(self.previous, now))
        self.previous, self.previous_s = now, now_s


# ----- load ------------------------------------------------------------------------------------------

@dataclass
class Results:
    # Every latency, for the exact percentiles of the run: as many as --payments-max at most.
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    payments: int = 0           # answered as expected: approved, or declined when the mix sent a decline card
    kinds: Counter[str] = field(default_factory=Counter)        # the mix's payments by kind
    follow_ups: Counter[str] = field(default_factory=Counter)   # the mix's captures and refunds, by status
    # The same answers per second, in histograms of a fixed size, for the picture.
    timeline: Timeline | None = None


async def first_token(url: str, api_key: str, ca_file: str | None = None) -> str:
    """One real payment with raw card data, to get the vault token the load then reuses."""
    return (await card_tokens(url, api_key, [TEST_CARD], ca_file))[0]


async def card_tokens(url: str, api_key: str, cards: Sequence[Mapping[str, object]],
                      ca_file: str | None = None) -> list[str]:
    """A real payment with each card's data, and the vault token each one got."""
    client = Client(url, api_key, ca_file=ca_file)
    tokens = []
    try:
        for card in cards:
            response = await client.request("POST", "/v1/payments", {"amount": 100, "currency": "usd",
                                                                       "capture_method": "manual",
                                                                       "payment_method": card},
                                             idempotency_key=f"bench-token-{secrets.token_hex(8)}")
            if response.status != 200:
                raise SystemExit(f"bench: a first payment failed with {response.status}: {response.body[:300]!r}")
            tokens.append(str(response.json()["payment_method"]["token"]))
    finally:
        await client.close()
    return tokens


@dataclass
class Budget:
    """The requests a run may still start: until its deadline or its count is used up, paced to `rate` a
    second in all when one is given."""

    deadline: float
    remaining: int
    pace: float = 0.0
    next_slot: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, duration_s: float, payments_max: int, rate: float) -> Budget:
        return cls(time.monotonic() + duration_s, payments_max, 1.0 / rate if rate > 0 else 0.0)

    async def take(self) -> bool:
        """Whether another request may start (after waiting for its slot when paced)."""
        if time.monotonic() >= self.deadline or self.remaining <= 0:
            return False
        self.remaining -= 1
        if self.pace:
            slot, self.next_slot = self.next_slot, self.next_slot + self.pace
            if (delay := slot - time.monotonic()) > 0:
                await asyncio.sleep(delay)
        return True


def record(results: Results | None, started: float, status: int | None, error: BaseException | None = None,
           prefix: str = "http", expected: int = 200) -> None:
    if results is None:
        return
    if error is not None:
        results.errors[error.__class__.__name__] += 1
        if results.timeline is not None:
            results.timeline.add(None, approved=False)
        return
    latency_s = time.perf_counter() - started
    results.latencies_s.append(latency_s)
    results.outcomes[str(status)] += 1
    results.payments += status == expected
    if status != expected:
        results.errors[f"{prefix}_{status}"] += 1
    if results.timeline is not None:
        results.timeline.add(latency_s, approved=status == expected)


async def drive(url: str, api_key: str, body: bytes | Callable[[], bytes], connections: int, duration_s: float,
                payments_max: int, results: Results | None, ca_file: str | None = None, rate: float = 0.0) -> int:
    """Run `connections` loops until the duration or the payment count is used up; returns requests sent.
    With `rate`, requests start at most that many a second in all (paced), so two builds can be compared
    at the same throughput rather than each at its own saturation. `body` is the same bytes every time, or
    a callable that makes each request's (--new-cards)."""
    budget = Budget.of(duration_s, payments_max, rate)
    run = secrets.token_hex(4)

    async def loop(index: int) -> None:
        client = Client(url, api_key, ca_file=ca_file)
        sequence = 0
        try:
            while await budget.take():
                sequence += 1
                started = time.perf_counter()
                try:
                    payload = body() if callable(body) else body
                    response = await client.request("POST", "/v1/payments", payload, timeout_s=REQUEST_TIMEOUT_S,
                                                    idempotency_key=f"bench-{run}-{index}-{sequence}")
                except (OSError, TimeoutError, ValueError) as error:
                    record(results, started, None, error)
                    continue
                record(results, started, response.status)
        finally:
            await client.close()

    await asyncio.gather(*(loop(index) for index in range(connections)))
    return payments_max - budget.remaining


async def drive_mix(url: str, api_key: str, tokens: list[str], connections: int, duration_s: float,
                    payments_max: int, results: Results | None, ca_file: str | None = None, rate: float = 0.0) -> int:
    """As drive, with the mix's payments (loadtest/mix.py): each loop draws its own, and sends a payment's
    capture or refund right after it when the mix says so (not counted against the budget: a payment is
    one however many requests it takes)."""
    budget = Budget.of(duration_s, payments_max, rate)
    run = secrets.token_hex(4)
    seed = secrets.randbits(32)

    async def loop(index: int) -> None:
        client, mix, sequence = Client(url, api_key, ca_file=ca_file), Mix(tokens, seed + index), 0
        try:
            while await budget.take():
                sequence += 1
                step = mix.next()
                key = f"bench-{run}-{index}-{sequence}"
                started = time.perf_counter()
                try:
                    response = await client.request("POST", "/v1/payments", step.body, timeout_s=REQUEST_TIMEOUT_S,
                                                    idempotency_key=key)
                except (OSError, TimeoutError, ValueError) as error:
                    record(results, started, None, error)
                    continue
                record(results, started, response.status, expected=step.expected)
                if results is not None:
                    results.kinds[step.kind] += 1
                if step.follow is not None and response.status == 200:
                    await follow_up(client, mix, step, response.body, key, results)
        finally:
            await client.close()

    await asyncio.gather(*(loop(index) for index in range(connections)))
    return payments_max - budget.remaining


_payment_id = msgspec.json.Decoder(type=dict[str, object])


async def follow_up(client: Client, mix: Mix, step: Step, answer: bytes, key: str, results: Results | None) -> None:
    path, body = mix.follow_up(step, str(_payment_id.decode(answer)["id"]))
    try:
        response = await client.request("POST", path, body, timeout_s=REQUEST_TIMEOUT_S, idempotency_key=f"{key}-f")
    except (OSError, TimeoutError, ValueError) as error:
        if results is not None:
            results.errors[f"{step.follow}_{error.__class__.__name__}"] += 1
        return
    if results is not None:
        results.follow_ups[f"{step.follow} {response.status}"] += 1
        if response.status != 200:
            results.errors[f"{step.follow}_{response.status}"] += 1


async def saved_tokens(url: str, api_key: str, ca_file: str | None = None) -> list[str]:
    """The mix's returning customers' tokens: one payment with each saved card's data."""
    cards: list[dict[str, object]] = [
        {"card": {**EXPIRY, "number": number, "cvc": "1234" if number.startswith(("34", "37")) else "123"}}
        for number in SAVED_CARDS]
    return await card_tokens(url, api_key, cards, ca_file)


class TcpConnection:
    """One merchant-protocol connection (docs/merchant-protocol.md) carrying many requests at once: the
    bench's own lean client (the SDK's retries and models are not what is measured)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Future[dict[str, object]]] = {}
        self.next_id = 0
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, address: str, api_key: str) -> TcpConnection:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        connection = cls(reader, writer)
        writer.write(_tcp_frame({"op": "hello", "v": 1, "api_key": api_key}))
        hello = await _tcp_read(reader)
        if hello.get("op") != "hello":
            raise OSError(f"hello refused: {hello.get('code')}")
        connection.task = asyncio.get_running_loop().create_task(connection._answers())
        return connection

    async def _answers(self) -> None:
        try:
            while True:
                answer = await _tcp_read(self.reader)
                future = self.waiting.pop(answer.get("id"), None)  # type: ignore[call-overload]
                if future is not None and not future.done():
                    future.set_result(answer)
        except (OSError, asyncio.IncompleteReadError):
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(OSError("connection lost"))

    async def create(self, body: dict[str, object], key: str) -> int:
        self.next_id += 1
        future = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        self.writer.write(_tcp_frame({"op": "payments.create", "id": self.next_id, "idempotency_key": key,
                                      "body": body}))
        answer = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        return int(answer["status"])  # type: ignore[call-overload]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()


def _tcp_frame(message: dict[str, object]) -> bytes:
    payload = msgspec.msgpack.encode(message)
    return len(payload).to_bytes(4, "big") + payload


async def _tcp_read(reader: asyncio.StreamReader) -> dict[str, object]:
    length = int.from_bytes(await reader.readexactly(4), "big")
    return msgspec.msgpack.decode(await reader.readexactly(length))  # type: ignore[no-any-return]


async def drive_tcp(address: str, api_key: str,
                    fields: dict[str, object] | Callable[[], dict[str, object]], in_flight: int, connections: int,
                    duration_s: float, payments_max: int, results: Results | None, rate: float = 0.0) -> int:
    """`in_flight` request loops spread over `connections` TCP connections (each multiplexed)."""
    budget = Budget.of(duration_s, payments_max, rate)
    run = secrets.token_hex(4)
    links = [await TcpConnection.open(address, api_key) for _ in range(connections)]

    async def loop(index: int) -> None:
        link, sequence = links[index % connections], 0
        while await budget.take():
            sequence += 1
            started = time.perf_counter()
            try:
                status = await link.create(fields() if callable(fields) else fields,
                                           f"bench-tcp-{run}-{index}-{sequence}")
            except (OSError, TimeoutError) as error:
                record(results, started, None, error)
                continue
            record(results, started, status, prefix="tcp")

    try:
        await asyncio.gather(*(loop(index) for index in range(in_flight)))
    finally:
        for link in links:
            await link.close()
    return payments_max - budget.remaining


def percentile_ms(ordered: list[float], fraction: float) -> float:
    """The `fraction` percentile, in ms, of latencies in seconds already sorted ascending."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def print_machine(line: Timeline, elapsed_s: float) -> None:
    """How slow the machine itself was over the run, from the probe's seconds (loadtest.machine)."""
    reference = quiet_ms(line.machine_samples)
    factors = [factor for window in per_window(line, elapsed_s)
               if (factor := slowdown(line.machine_samples, window.start_s, window.start_s + window.width_s))]
    if reference is None or not factors:
        return
    print(f"machine: the probe's work took {reference:.1f} ms of CPU in the run's quietest seconds; its 10 s windows "
          f"x{min(factors):.2f} to x{max(factors):.2f} of that (median x{statistics.median(factors):.2f})")


def print_windows(line: Timeline, elapsed_s: float) -> None:
    """Throughput, p99 and machine CPU per payment for every 10 s of the run: a decay shows here. Each window
    ends with how slow the machine itself was then (loadtest.machine: x1.00 is the run's quietest seconds),
    so the host's slow episodes are not read as the stack's decay."""
    print("per 10 s:")
    for window in per_window(line, elapsed_s):
        by_process = cpu_per_payment_by_process_us(line, window)
        largest = sorted(by_process.items(), key=lambda item: item[1], reverse=True)[:3]
        factor = slowdown(line.machine_samples, window.start_s, window.start_s + window.width_s)
        machine = f"  machine x{factor:.2f}" if factor is not None else ""     # against the run's quietest seconds
        print(f"  {window.start_s:5.0f}-{window.start_s + window.width_s:<5.0f} s  {window.payments_per_s:7,.0f} "
              f"payments/s  p99 {window.latency_ms['p99']:7.1f} ms  errors/s {window.errors_per_s:5.1f}  "
              f"CPU {cpu_per_payment_us(line, window):6,.0f} µs/payment  ("
              + ", ".join(f"{name} {us:,.0f}" for name, us in largest) + ")" + machine)


def report(results: Results, elapsed_s: float, cpu: dict[str, float], connections: int,
           plot_path: Path | None = None, kernel: dict[str, float] | None = None) -> None:
    count = len(results.latencies_s)
    ok = results.payments
    rate = ok / elapsed_s if elapsed_s else 0.0
    errors = sum(results.errors.values())
    ordered = sorted(results.latencies_s)
    p50, p99 = percentile_ms(ordered, 0.50), percentile_ms(ordered, 0.99)
    print(f"\n{count} payments in {elapsed_s:.1f}s with {connections} connections: {ok} answered as expected "
          f"({rate:,.0f} payments/s)")
    if results.kinds:
        print(f"mix: {dict(results.kinds)}  follow-ups: {dict(results.follow_ups)}")
    print(f"latency ms: p50 {p50:.1f}  p95 {percentile_ms(ordered, 0.95):.1f}  p99 {p99:.1f}  "
          f"max {percentile_ms(ordered, 1.0):.1f}")
    print(f"responses: {dict(results.outcomes)}  errors: {dict(results.errors) or 0}")
    if cpu:
        print("CPU seconds during the run (and µs per payment, and the share of it in the kernel):")
        for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
            per_payment = seconds / ok * 1e6 if ok else 0.0
            share = f"   kernel {100 * kernel[name] / seconds:3.0f} %" if kernel and name in kernel and seconds else ""
            print(f"  {name:<14} {seconds:7.2f} s   {per_payment:8.0f} µs/payment{share}")
        total, cores = sum(cpu.values()), os.cpu_count() or 1
        print(f"  {'total':<14} {total:7.2f} s   {total / ok * 1e6 if ok else 0:8.0f} µs/payment "
              f"(of {cores} cores x {elapsed_s:.1f} s = {cores * elapsed_s:.1f} s)")
    if results.timeline is not None:
        print_machine(results.timeline, elapsed_s)
        print_windows(results.timeline, elapsed_s)
    if plot_path is not None:
        print(f"PLOT path={plot_path}")
    print(f"RESULT payments_per_s={rate:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} errors={errors}", flush=True)


def new_card_bodies(fields: dict[str, object]) -> tuple[Callable[[], bytes], Callable[[], dict[str, object]]]:
    """Request bodies (HTTP bytes, TCP fields) each with a card number never sent before (NewCards); the JSON
    is encoded once and each number spliced into it (mix.card_body)."""
    cards = NewCards()
    card = TEST_CARD["card"]

    def fields_of() -> dict[str, object]:
        return {**fields, "payment_method": {"card": {**card, "number": cards.next()}}}

    return card_body(fields, cards), fields_of


async def measure(url: str, api_key: str, args: argparse.Namespace, roots: dict[str, int]) -> None:
    ca_file = getattr(args, "ca_file", None)
    token = await first_token(url, api_key, ca_file) if not args.mix else ""
    fields = {"amount": 1999, "currency": "usd", "capture_method": "manual", "payment_method": token}
    if args.raw_card:
        fields["payment_method"] = TEST_CARD
    body: bytes | Callable[[], bytes] = json.dumps(fields).encode()  # encoded once: the load generator
    fields_of: dict[str, object] | Callable[[], dict[str, object]] = fields  # must stay cheap
    if args.new_cards:
        body, fields_of = new_card_bodies(fields)
    tokens = await saved_tokens(url, api_key, ca_file) if args.mix else []
    receiver = await WebhookReceiver.subscribe(url, api_key, ca_file) if args.webhook else None
    roots = {**roots, "loadgen": os.getpid()}
    transports = ["http", "tcp"] if args.transport == "both" else [args.transport]
    summary, runs = [], []
    for transport in transports:
        async def run(duration_s: float, results: Results | None, transport: str = transport) -> None:
            if args.mix:
                await drive_mix(url, api_key, tokens, args.connections, duration_s, args.payments_max, results,
                                ca_file, args.rate if results else 0.0)
            elif transport == "tcp":
                await drive_tcp(args.tcp_address, api_key, fields_of, args.connections, args.tcp_connections,
                                duration_s, args.payments_max, results, args.rate if results else 0.0)
            else:
                await drive(url, api_key, body, args.connections, duration_s, args.payments_max, results,
                            ca_file, args.rate if results else 0.0)

        print(f"[{transport}] warm-up {args.warmup_s:.0f}s ...", flush=True)
        await run(args.warmup_s, None)
        print(f"[{transport}] measuring {args.duration_s:.0f}s with {args.connections} requests in flight ...",
              flush=True)
        profiling = args.statements and getattr(args, "database_url", None)
        before = await statements.snapshot(args.database_url) if profiling else None
        timing_steps = args.steps and getattr(args, "ops_url", None)
        steps_before = await asyncio.to_thread(steps.snapshot, args.ops_url) if timing_steps else {}
        profiler = None
        if args.profile:
            python = {name: pid for name, pid in roots.items() if name in PYTHON_PROCESSES}
            profiler = Profiler(RUN_DIR / f"profile-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{transport}", python)
            await profiler.start(args.duration_s)
        results, drawn = await measured(transport, run, args.duration_s, roots)
        if profiler is not None:
            print("\n".join(await profiler.stop()), flush=True)
        if before is not None:
            after = await statements.snapshot(args.database_url)
            print("\n".join(statements.full_report(before, after, results.payments)), flush=True)
        runs.append(drawn)
        elapsed_s, cpu = drawn.elapsed_s, drawn.cpu_s
        if getattr(args, "ops_url", None):
            await asyncio.sleep(1.5)        # the switch hands its screen counters to /metrics once a second
            await asyncio.to_thread(print_fraud_screen, args.ops_url)
        if timing_steps:
            steps_after = await asyncio.to_thread(steps.snapshot, args.ops_url)
            print("\n".join(steps.report(steps_before, steps_after, results.payments, cpu.get("switch", 0.0))),
                  flush=True)
        if receiver is not None:
            await receiver.report(getattr(args, "database_url", None))
        ok = results.payments
        summary.append(f"{transport}_payments_per_s={ok / elapsed_s:.0f} "
                       f"{transport}_switch_us={cpu.get('switch', 0.0) / ok * 1e6 if ok else 0:.0f}")
        if transport != transports[-1]:
            report(results, elapsed_s, cpu, args.connections, kernel=drawn.kernel_s)
    if len(transports) > 1:
        print("COMPARE " + " ".join(summary), flush=True)
    report(results, elapsed_s, cpu, args.connections, plot(runs, args), kernel=runs[-1].kernel_s)


async def measured(label: str, run: Callable[[float, Results | None], Awaitable[None]], duration_s: float,
                   roots: dict[str, int]) -> tuple[Results, Run]:
    """The measured window: its results, and its elapsed seconds, CPU seconds per process tree and timeline of
    each second (sized for the duration and the drain of the requests still in flight at its end)."""
    meter = CpuMeter(roots)
    timeline = Timeline(math.ceil(duration_s + REQUEST_TIMEOUT_S) + 1)
    results = Results(timeline=timeline)
    collector.freeze_survivors()        # what set-up and warm-up made: not walked by the measured run's passes
    meter.begin()
    timeline.start()
    sampler = CpuSampler(meter, timeline)
    sampler.start()
    probe = MachineProbe(timeline.machine_samples)
    await probe.start(duration_s + REQUEST_TIMEOUT_S, timeline.now_s)
    started = time.monotonic()
    try:
        await run(duration_s, results)
    finally:
        await probe.stop()
    elapsed_s = time.monotonic() - started
    await sampler.stop()
    return results, Run(label, timeline, elapsed_s, meter.end(), results.payments, meter.kernel_s)


def plot(runs: list[Run], args: argparse.Namespace) -> Path | None:
    """Draw the runs' timelines into --plot (default .run/bench-<UTC time>.png); None with --no-plot."""
    if args.no_plot:
        return None
    now = datetime.now(UTC)
    path = Path(args.plot) if args.plot else RUN_DIR / f"bench-{now:%Y%m%dT%H%M%SZ}.png"
    stack = f"{args.workers} switch workers" if not args.url else f"the stack at {args.url}"
    paced = f", paced to {args.rate:,.0f} payments/s" if args.rate else ""
    title = (f"make bench, {now:%Y-%m-%d %H:%M} UTC: {args.connections} requests in flight{paced}, {stack}, "
             f"{os.cpu_count()} cores")
    try:
        draw(runs, title, path)
    except ImportError as error:
        # The figures are the bench's result; a missing plotting library must not cost them.
        print(f"bench: no plot ({error}; `make setup` installs matplotlib)", file=sys.stderr)
        return None
    return path


@dataclass
class WebhookReceiver:
    """--webhook: an endpoint subscribed to every event, answered 200 by the load generator itself (a lean
    receiver, loadtest/receiver.py; its CPU counts in `loadgen`); at the end, how many came and how long the
    backlog took to drain."""

    port: int
    counted: list[int] = field(default_factory=lambda: [0])

    @property
    def received(self) -> int:
        return self.counted[0]

    @classmethod
    async def subscribe(cls, url: str, api_key: str, ca_file: str | None) -> WebhookReceiver:
        from loadtest import receiver as counting
        from switch.dev.devstack import free_port

        receiver = cls(free_port())
        await counting.serve("127.0.0.1", receiver.port, receiver.counted)
        client = Client(url, api_key, ca_file=ca_file)
        made = await client.request("POST", "/v1/webhook_endpoints", {
            "url": f"http://127.0.0.1:{receiver.port}/bench", "enabled_events": ["*"]})
        await client.close()
        if made.status != 200:
            raise SystemExit(f"bench: the webhook endpoint was refused: {made.status} {made.body[:200]!r}")
        return receiver

    async def report(self, database_url: str | None) -> None:
        """Wait (at most WEBHOOK_DRAIN_S) for the deliveries still pending, and print the lag."""
        if database_url is None:
            print(f"webhooks: {self.received} delivered by the end of the run")
            return
        import asyncpg

        from switch.store.webhooks import pending_count

        conn = await asyncpg.connect(database_url)
        try:
            pending, oldest_s = await pending_count(conn)
            started = time.monotonic()
            while pending and time.monotonic() - started < WEBHOOK_DRAIN_S:
                await asyncio.sleep(0.5)
                pending, _ = await pending_count(conn)
        finally:
            await conn.close()
        drained = "drained" if not pending else f"{pending} still pending"
        print(f"webhooks: {self.received} delivered; at the end of the run {oldest_s:.1f} s behind, "
              f"{drained} {time.monotonic() - started:.1f} s later")


WEBHOOK_DRAIN_S = 60.0


def print_fraud_screen(ops_url: str) -> None:
    """The fraud screen's decisions and fail-opens over the whole run (warm-up included), from /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{ops_url}/metrics", timeout=5) as answer:   # noqa: S310 - loopback
        text = answer.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("switch_fraud_decisions_total", "switch_fraud_unavailable_total",
                     "switch_fraud_screen_seconds_total"):
            if line.startswith(name):
                key = line.split("{", 1)[1].split("}")[0] if "{" in line else name
                totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    screens = sum(value for key, value in totals.items() if key.startswith("decision="))
    mean_us = 1e6 * totals.get("switch_fraud_screen_seconds_total", 0.0) / screens if screens else 0.0
    print(f"fraud screen: {screens:.0f} screened, {totals.get('switch_fraud_unavailable_total', 0):.0f} without "
          f"their counters in budget (failed open); mean {mean_us:.1f} µs in the screen (its wait for counters "
          "included); " + ", ".join(
              f"{key} {value:.0f}" for key, value in sorted(totals.items()) if key.startswith("decision=") and value))


def stack_roots(stack: object) -> dict[str, int]:
    names = {"switch": "switch", "vault": "vault", "acquirer_sim": "simulator", "postgres": "postgres",
             "redis": "redis"}
    return {names[s.name]: s.process.pid for s in stack.services if s.name in names}  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    from switch.dev.devstack import co_located_workers

    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use a running stack (with --api-key) instead of starting one")
    parser.add_argument("--api-key")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--payments-max", type=int, default=500_000, help="stop after this many requests")
    parser.add_argument("--workers", type=int, default=co_located_workers(),
                        help="switch workers when starting a stack (default: half the cores, at least one)")
    parser.add_argument("--transport", choices=["http", "tcp", "both"], default="http",
                        help="HTTP, the merchant TCP protocol, or both one after the other (CPU per payment each)")
    parser.add_argument("--tcp-connections", type=int, default=8,
                        help="TCP connections the requests in flight share (--transport tcp)")
    parser.add_argument("--tcp-address", help="host:port of the TCP protocol, with --url")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="pace the measured run to this many payments/s in all (0: as fast as it goes)")
    path = parser.add_mutually_exclusive_group()
    path.add_argument("--token", action="store_true",
                      help="one path instead of the mix: every payment with one saved vault token")
    path.add_argument("--raw-card", action="store_true",
                      help="one path instead of the mix: card data (tokenize), the same card every time")
    parser.add_argument("--new-cards", action="store_true",
                        help="with --raw-card: a new card number every payment (first-time customers), so the "
                             "vault stores a row per payment")
    parser.add_argument("--tls", action="store_true", help="HTTPS on the merchant port (throwaway self-signed pair)")
    parser.add_argument("--webhook", action=argparse.BooleanOptionalAction,
                        help="subscribe a local endpoint to every event and report the delivery lag (the mix's "
                             "default; --no-webhook turns it off)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the Python processes with py-spy during the run and print where their CPU "
                             "went (loadtest/profile.py)")
    parser.add_argument("--statements", action="store_true",
                        help="Postgres with pg_stat_statements: print the statements that took its time during the "
                             "run (loadtest/statements.py)")
    parser.add_argument("--steps", action="store_true",
                        help="the switch with SWITCH_STEP_CPU=1: print each pipeline step's own CPU per run "
                             "(loadtest/steps.py)")
    plot_group = parser.add_mutually_exclusive_group()
    plot_group.add_argument("--plot", metavar="PATH",
                            help="where to draw throughput, latency and CPU per second "
                                 "(default .run/bench-<UTC time>.png)")
    plot_group.add_argument("--no-plot", action="store_true", help="draw no PNG")
    parser.add_argument("--keep-run-dir", action="store_true",
                        help="keep the stack's logs and throwaway keys under .run/ (removed by default)")
    args = parser.parse_args(argv)
    if args.new_cards and not args.raw_card:
        parser.error("--new-cards needs --raw-card")
    args.mix = not (args.token or args.raw_card)
    if args.mix and args.transport != "http":
        parser.error("the mix runs over HTTP: --transport tcp or both needs --token or --raw-card")
    if args.webhook is None:
        args.webhook = args.mix
    import uvloop

    # The load generator shares the loop with the requests it times: a full collection pauses every request in
    # flight. At the default young threshold (700) its requests' objects were promoted while still in flight
    # and died in the oldest generation: a full pass every 10 s, 15-84 ms each. The switch's workers raise
    # the threshold the same way.
    gc.set_threshold(collector.YOUNG_THRESHOLD, 10, 10)
    if args.url:
        if not args.api_key:
            parser.error("--url needs --api-key")
        uvloop.run(measure(args.url, args.api_key, args, {}))
        return 0
    from switch.dev.devstack import Stack, new_run_dir

    # The bench's own merchant and address get limits far above what it sends (make up keeps the defaults).
    # The screen runs in full (signals, counters, score, rules) but acts on the lists only: the bench pays
    # with a few saved cards thousands of times a second.
    stack = Stack(run_dir=new_run_dir(), tls=args.tls, address_rate_limit_per_s=1_000_000,
                  merchant_rate_limit_per_s=1_000_000, fraud_rules="lists", statements=args.statements,
                  switch_server_env={"SWITCH_STEP_CPU": "1"} if args.steps else {})
    def body(stack: Stack) -> int:
        args.ca_file = stack.tls_ca_file or None
        args.ops_url = stack.switch_ops_url
        args.tcp_address = f"127.0.0.1:{stack.switch_tcp_port}"
        args.database_url = stack.database_url
        uvloop.run(measure(stack.switch_url, stack.api_key, args, stack_roots(stack)))
        return 0

    return run_on_stack("bench", stack, lambda stack: stack.start_all(workers=args.workers), body,
                        keep_run_dir=args.keep_run_dir)

if __name__ == "__main__":
    sys.exit(main())
