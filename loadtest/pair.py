"""`make bench-pair`: two builds benched at the same time, so both see the same machine.

On this noisy 2-core machine one bench run varies by ±30 % within an hour, so a change worth 1-5 % of the
switch's CPU cannot be told apart by runs one after the other, even alternating. Here both builds (two git
revisions, checked out in throwaway worktrees) run `loadtest.bench` at once with the same arguments, each
with its own stack, so whatever else the machine is doing weighs on both alike. The build that starts
first alternates from pair to pair. Each side's CPU per payment is its own processes' CPU over its own
payments; the figure that matters is the difference within each pair, and its median over the pairs.

Run the same revision on both sides first (an A/A run): the spread of its differences is what the method
can resolve. On 2026-12-06, 4 A/A pairs of the mix at saturation gave switch differences of +30, +4, -10
and -31 µs a payment.

Two stacks started at once can both be handed the same free port (devstack.free_port's race): a pair
whose bench failed is run again, up to RETRIES times. The last line is

    PAIR pairs=<n> base=<rev> change=<rev> payments_per_s=<base>/<change> switch_us=<base>/<change>
         switch_diff_us=<median of the pairs' differences> total_diff_us=<...>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RETRIES = 2
STAGGER_S = 0.5
PROCESSES = ("switch", "postgres", "vault", "redis", "simulator", "loadgen", "total")
_CPU_LINE = re.compile(r"^\s+(\w+)\s+[\d.]+ s\s+(\d+) µs/payment", re.M)
_RESULT = re.compile(r"^RESULT payments_per_s=(\d+) .*errors=(\d+)", re.M)


@dataclass(frozen=True)
class Run:
    """One bench run's figures: payments/s, errors and CPU µs per payment by process."""

    payments_per_s: int
    errors: int
    cpu_us: dict[str, int]


def parse(output: str) -> Run | None:
    """A bench's output as its figures, or None when it did not finish (no RESULT line)."""
    result = _RESULT.search(output)
    if result is None:
        return None
    cpu = {name: int(us) for name, us in _CPU_LINE.findall(output)}
    return Run(int(result.group(1)), int(result.group(2)), cpu)


def pair_line(number: int, b: Run, c: Run) -> str:
    return (f"pair {number}: payments/s {b.payments_per_s} / {c.payments_per_s}, µs per payment "
            + ", ".join(f"{name} {b.cpu_us[name]} / {c.cpu_us.get(name, 0)}" for name in PROCESSES if name in b.cpu_us))


def differences(pairs: list[tuple[Run, Run]], process: str) -> list[int]:
    """Change minus base, per pair, in µs per payment of `process`."""
    return [change.cpu_us.get(process, 0) - base.cpu_us.get(process, 0) for base, change in pairs]


def summary(pairs: list[tuple[Run, Run]], base: str, change: str) -> list[str]:
    """A line per pair, then the medians, then the PAIR line."""
    lines = [pair_line(number, b, c) for number, (b, c) in enumerate(pairs, 1)]
    lines.append("medians (base / change, and of the pairs' differences), µs per payment:")
    for name in PROCESSES:
        if all(name in b.cpu_us for b, _ in pairs):
            diffs = differences(pairs, name)
            lines.append(f"  {name:10s} {_medians([(b.cpu_us[name], c.cpu_us[name]) for b, c in pairs])}   "
                         f"difference {_median(diffs):+6.0f}  (pairs: {' '.join(f'{d:+d}' for d in diffs)})")
    rates = _medians([(b.payments_per_s, c.payments_per_s) for b, c in pairs], width=0, sep="/")
    switch = _medians([(b.cpu_us.get("switch", 0), c.cpu_us.get("switch", 0)) for b, c in pairs], width=0, sep="/")
    lines.append(f"PAIR pairs={len(pairs)} base={base} change={change} payments_per_s={rates} switch_us={switch} "
                 f"switch_diff_us={_median(differences(pairs, 'switch')):+.0f} "
                 f"total_diff_us={_median(differences(pairs, 'total')):+.0f}")
    return lines


def _median(values: list[int]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _medians(figures: list[tuple[int, int]], width: int = 7, sep: str = " / ") -> str:
    """The median of a figure on each side of the pairs: base, then change."""
    return sep.join(f"{_median([pair[side] for pair in figures]):{width}.0f}" for side in (0, 1))


async def bench(tree: Path, args: list[str], delay_s: float) -> str:
    """One bench run in `tree` (its own code first on the path), its whole output."""
    await asyncio.sleep(delay_s)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest.bench", "--no-plot", *args, cwd=tree, env=_env(tree),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    return output.decode(errors="replace")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


async def one_pair(trees: tuple[Path, Path], args: list[str], base_first: bool) -> tuple[Run, Run] | None:
    """Both builds at once; the second starts STAGGER_S after the first."""
    delays = (0.0, STAGGER_S) if base_first else (STAGGER_S, 0.0)
    outputs = await asyncio.gather(*(bench(tree, args, delay) for tree, delay in zip(trees, delays, strict=True)))
    runs = [parse(output) for output in outputs]
    for tree, output, run in zip(trees, outputs, runs, strict=True):
        if run is None:
            print(f"  the bench in {tree.name} did not finish; its last lines:\n"
                  + "\n".join(output.splitlines()[-5:]), flush=True)
    if runs[0] is None or runs[1] is None:
        return None
    return runs[0], runs[1]


async def run_pairs(trees: tuple[Path, Path], args: list[str], count: int) -> list[tuple[Run, Run]]:
    pairs: list[tuple[Run, Run]] = []
    for number in range(count):
        for _ in range(RETRIES + 1):
            pair = await one_pair(trees, args, base_first=number % 2 == 0)
            if pair is not None:
                pairs.append(pair)
                print(pair_line(number + 1, *pair), flush=True)
                break
        else:
            raise SystemExit(f"bench-pair: pair {number + 1} failed {RETRIES + 1} times")
    return pairs


def checkout(revision: str, into: Path) -> Path:
    """A throwaway worktree of `revision` (detached: no branch is made)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", "-q", str(into), revision],
                   check=True)
    return into


def remove(tree: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    shutil.rmtree(tree, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="arguments after -- go to loadtest.bench, e.g. -- --token")
    parser.add_argument("--base", default="HEAD~1", help="git revision measured first in each pair's line")
    parser.add_argument("--change", default="HEAD", help="git revision compared with it")
    parser.add_argument("--pairs", type=int, default=3)
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, bench_args = parser.parse_args(argv[:split]), argv[split + 1:]
    with tempfile.TemporaryDirectory(prefix="bench-pair-") as scratch:
        trees = (checkout(args.base, Path(scratch) / "base"), checkout(args.change, Path(scratch) / "change"))
        try:
            pairs = asyncio.run(run_pairs(trees, bench_args, args.pairs))
        finally:
            for tree in trees:
                remove(tree)
    print("\n".join(summary(pairs, args.base, args.change)[len(pairs):]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
