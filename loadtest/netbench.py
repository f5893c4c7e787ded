"""`make bench-network` / `python -m loadtest.netbench`: the network layer's own costs, without HTTP,
Postgres, Redis or the vault.

1. Codec: µs per encode + decode of an 0100 in each profile (pyiso8583 under our profiles).
2. Links: round trips/s with many requests in flight (default 1,000) through a `Pool` of 1 and of 4
   links to the simulator, for a bounded time and count. The simulator runs as a subprocess by default,
   so the client CPU (time.process_time of this process) and the simulator's CPU are measured apart.
   Client CPU per round trip includes encoding the request and decoding the response.

The last line is always (figures of the pool of 4 links):

    NETBENCH codec_us=<generic 0100 encode+decode> roundtrips_per_s=<n> client_cpu_us=<x>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass

import uvloop

from switch.iso.messages import authorization_request, decode, encode
from switch.iso.profiles import PROFILES, Profile
from switch.network.config import Endpoint, LinkConfig
from switch.network.link import Message, NetworkError
from switch.network.pool import Pool

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SIMULATOR_START_TIMEOUT_S = 20.0
PAN = "4242424242424242"


def sample_authorization(stan: int = 1, terminal_id: str = "TERM0001") -> Message:
    return authorization_request(pan=PAN, amount_minor=1999, currency="840", stan=f"{stan:06d}",
                                 rrn=f"{stan:012d}", terminal_id=terminal_id, merchant_id="MERCHANT000001",
                                 expiry_yymm="3012", cvv="123")


# ----- codec -------------------------------------------------------------------------------------------

def codec_us(profile: Profile, iterations: int) -> float:
    """µs per encode + decode of one 0100, best of three runs (the least disturbed by the machine)."""
    message = sample_authorization()
    assert decode(profile, encode(profile, message)) == message
    best_s = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(iterations):
            decode(profile, encode(profile, message))
        best_s = min(best_s, time.perf_counter() - started)
    return best_s / iterations * 1e6


# ----- simulator -----------------------------------------------------------------------------------------

@dataclass
class SimulatorProcess:
    process: asyncio.subprocess.Process | None
    ports: dict[str, int]
    in_process: object | None = None

    def cpu_s(self) -> float:
        """CPU seconds the simulator process has used (0 when it runs in this process)."""
        if self.process is None:
            return 0.0
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    async def stop(self) -> None:
        if self.process is not None:
            if self.process.returncode is None:
                self.process.terminate()
            await self.process.wait()
        if self.in_process is not None:
            from acquirer_sim.server import Simulator

            assert isinstance(self.in_process, Simulator)
            await self.in_process.close()


async def start_simulator(in_process: bool) -> SimulatorProcess:
    if in_process:
        from acquirer_sim.server import Simulator

        simulator = Simulator(records_max=1000)
        ports = await simulator.start("127.0.0.1", {"generic": 0})
        return SimulatorProcess(None, ports, simulator)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", "--host", "127.0.0.1", "--records-max", "1000",
        stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(SIMULATOR_START_TIMEOUT_S):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise SystemExit("netbench: the simulator exited before it was ready")
                if line.startswith("SIM READY"):
                    break
    except TimeoutError:
        process.kill()
        raise SystemExit("netbench: the simulator did not start in time") from None
    ports = {key: int(value) for key, value in (token.split("=", 1) for token in line.split()[2:])}
    return SimulatorProcess(process, ports)


# ----- round trips ---------------------------------------------------------------------------------------

@dataclass
class RunResult:
    links: int
    roundtrips: int
    errors: int
    wall_s: float
    client_cpu_s: float
    simulator_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.roundtrips / self.wall_s if self.wall_s else 0.0

    @property
    def client_cpu_us(self) -> float:
        return self.client_cpu_s / self.roundtrips * 1e6 if self.roundtrips else 0.0

    @property
    def simulator_cpu_us(self) -> float:
        return self.simulator_cpu_s / self.roundtrips * 1e6 if self.roundtrips else 0.0


async def drive(pool: Pool, inflight: int, duration_s: float, roundtrips_max: int) -> tuple[int, int]:
    """`inflight` loops, each with one request in flight, until the time or the count runs out."""
    deadline = time.monotonic() + duration_s
    budget = [roundtrips_max]
    counts = [0, 0]

    async def loop(index: int) -> None:
        # One terminal per loop and one request in flight per loop: match keys never collide.
        template = sample_authorization(1, terminal_id=f"B{index:07d}")
        stan = 0
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            stan = stan % 999_999 + 1
            message = dict(template)
            message["11"] = f"{stan:06d}"
            try:
                await pool.request(message, 10.0)
                counts[0] += 1
            except NetworkError:
                counts[1] += 1

    await asyncio.gather(*(loop(index) for index in range(inflight)))
    return counts[0], counts[1]


async def measure_links(simulator: SimulatorProcess, links: int, inflight: int, duration_s: float,
                        roundtrips_max: int) -> RunResult:
    pool = Pool("generic", PROFILES["generic"], [Endpoint("127.0.0.1", simulator.ports["generic"])],
                late_handler=lambda message: None, links_per_endpoint=links,
                link_config=LinkConfig(inflight_max=max(inflight, 1)))
    await pool.start()
    try:
        await drive(pool, inflight, min(0.5, duration_s), roundtrips_max // 10)  # Warm-up.
        cpu_before, sim_before, wall_before = time.process_time(), simulator.cpu_s(), time.perf_counter()
        roundtrips, errors = await drive(pool, inflight, duration_s, roundtrips_max)
        wall_s = time.perf_counter() - wall_before
        return RunResult(links, roundtrips, errors, wall_s, time.process_time() - cpu_before,
                         simulator.cpu_s() - sim_before)
    finally:
        await pool.close()


# ----- main ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="netbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec-iterations", type=int, default=5000)
    parser.add_argument("--inflight", type=int, default=1000, help="requests in flight at once")
    parser.add_argument("--duration-s", type=float, default=3.0, help="measured time per pool size")
    parser.add_argument("--roundtrips-max", type=int, default=200_000, help="cap on round trips per pool size")
    parser.add_argument("--links", default="1,4", help="pool sizes to measure, comma-separated")
    parser.add_argument("--in-process", action="store_true",
                        help="run the simulator in this process (then client CPU includes the simulator's)")
    args = parser.parse_args(argv)
    if args.inflight <= 0 or args.duration_s <= 0 or args.roundtrips_max <= 0 or args.codec_iterations <= 0:
        parser.error("counts and durations must be positive")
    return args


async def run(args: argparse.Namespace) -> None:
    codec = {name: codec_us(profile, args.codec_iterations) for name, profile in PROFILES.items()}
    for name, us in codec.items():
        print(f"codec {name:<10} 0100 encode+decode {us:7.1f} us")
    simulator = await start_simulator(args.in_process)
    results: list[RunResult] = []
    try:
        for links in (int(size) for size in args.links.split(",")):
            result = await measure_links(simulator, links, args.inflight, args.duration_s, args.roundtrips_max)
            results.append(result)
            print(f"pool of {links} link(s), {args.inflight} in flight: {result.roundtrips} round trips in "
                  f"{result.wall_s:.2f} s = {result.per_s:,.0f}/s; client CPU {result.client_cpu_us:.1f} us/rt "
                  f"(codec {codec['generic']:.1f} + link/pool {result.client_cpu_us - codec['generic']:.1f}); "
                  f"simulator CPU {result.simulator_cpu_us:.1f} us/rt; errors {result.errors}")
    finally:
        await simulator.stop()
    summary = max(results, key=lambda result: result.links)
    print(f"NETBENCH codec_us={codec['generic']:.1f} roundtrips_per_s={summary.per_s:.0f} "
          f"client_cpu_us={summary.client_cpu_us:.1f}")


def main(argv: list[str] | None = None) -> None:
    uvloop.run(run(parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
