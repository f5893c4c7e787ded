"""`python -m loadtest.simbench`: the acquirer simulator's own throughput and CPU cost per message.

The simulator runs as a subprocess (its CPU read from /proc/<pid>/stat); this process drives it with a
`Pool` of the switch's Links (the same loop as loadtest.netbench), once with a perfect network (the
simulator's fast path) and once with knobs set (the fault path: latency draws, error and duplicate
draws), each for a bounded time and count. The last line is:

    SIMBENCH perfect_msgs_per_s=<n> perfect_cpu_us=<x> faulty_msgs_per_s=<n> faulty_cpu_us=<x>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import uvloop

from loadtest.netbench import SIMULATOR_START_TIMEOUT_S, RunResult, SimulatorProcess, measure_links

FAULTY = {"latency_distribution": "lognormal", "latency_ms": 1, "latency_sigma": 0.5, "error_rate": 0.001}


async def start_simulator(behaviour: dict[str, object] | None) -> SimulatorProcess:
    extra = ["--behaviour", f"generic={json.dumps(behaviour)}"] if behaviour else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", "--host", "127.0.0.1", "--records-max", "10000",
        "--settlement-time", "off", *extra, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(SIMULATOR_START_TIMEOUT_S):
        line = (await process.stdout.readline()).decode()
    if not line.startswith("SIM READY"):
        process.kill()
        raise SystemExit("simbench: the simulator did not start")
    ports = {key: int(value) for key, value in (token.split("=", 1) for token in line.split()[2:])}
    return SimulatorProcess(process, ports)


async def measure(behaviour: dict[str, object] | None, args: argparse.Namespace) -> RunResult:
    simulator = await start_simulator(behaviour)
    try:
        return await measure_links(simulator, args.links, args.inflight, args.duration_s, args.messages_max)
    finally:
        await simulator.stop()


def report(label: str, result: RunResult) -> None:
    print(f"{label:8} {result.roundtrips:>8} messages in {result.wall_s:5.2f} s: {result.per_s:>9,.0f} msgs/s, "
          f"simulator {result.simulator_cpu_us:6.1f} µs CPU/msg, client {result.client_cpu_us:6.1f} µs CPU/msg, "
          f"{result.errors} errors", flush=True)  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    perfect = await measure(None, args)
    report("perfect", perfect)
    faulty = await measure(FAULTY, args)
    report("faulty", faulty)
    print(f"SIMBENCH perfect_msgs_per_s={perfect.per_s:.0f} perfect_cpu_us={perfect.simulator_cpu_us:.1f} "
          f"faulty_msgs_per_s={faulty.per_s:.0f} faulty_cpu_us={faulty.simulator_cpu_us:.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="simbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--links", type=int, default=4)
    parser.add_argument("--inflight", type=int, default=1000, help="requests in flight at once")
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--messages-max", type=int, default=300_000, help="cap on messages per run")
    uvloop.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
