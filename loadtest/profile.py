"""`make bench BENCH_ARGS=--profile`: where each Python process spends its CPU during the measured run.

py-spy samples the switch (its workers), the vault, the simulator and the load generator 100 times a second
without pausing them (`--nonblocking`), only while they hold the GIL (`--gil`: uvloop lets go of it while
it waits in epoll, so an idle loop is not counted as its last Python frame), for the measured window only,
into collapsed stacks (`.run/profile-<UTC time>/<process>.txt`, one line per stack with its sample count,
readable by flamegraph tools and speedscope). The bench then prints, per process, the functions that were
running most (self) and those most often on the stack (total).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100
TOP = 8
SCAFFOLD = 0.8      # a function on more of the stacks than this is the loop or main(), left out of "total"


class Profiler:
    def __init__(self, out_dir: Path, pids: dict[str, int]) -> None:
        self.out_dir = out_dir
        self.pids = pids
        self.running: dict[str, asyncio.subprocess.Process] = {}

    @staticmethod
    def available() -> str | None:
        """py-spy beside this Python (the project's .venv), else on PATH."""
        beside = Path(sys.executable).parent / "py-spy"
        return str(beside) if beside.exists() else shutil.which("py-spy")

    async def start(self, duration_s: float) -> None:
        binary = self.available()
        if binary is None:
            raise SystemExit("bench: --profile needs py-spy (`make setup` installs it into .venv)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            # The switch's workers are its children; the load generator's children are the whole stack.
            children = ["--subprocesses"] if name == "switch" else []
            self.running[name] = await asyncio.create_subprocess_exec(
                binary, "record", "--nonblocking", "--gil", *children, "--rate", str(RATE_HZ), "--format", "raw",
                "--duration", str(max(1, round(duration_s))), "--output", str(self.out_dir / f"{name}.txt"),
                "--pid", str(pid), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> list[str]:
        """Wait for the recordings (each ends by its duration) and summarize them."""
        lines = []
        for name, process in self.running.items():
            await process.wait()
            path = self.out_dir / f"{name}.txt"
            if path.exists():
                lines += summary(name, path.read_text())
        lines.append(f"PROFILE dir={self.out_dir}")
        return lines


def summary(name: str, collapsed: str, top: int = TOP) -> list[str]:
    """The functions with the most samples running (self) and on the stack (total), in % of the process's
    samples, from py-spy's collapsed stacks ("frame;frame;... count" per line, the leaf last)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for function in set(frames):
            anywhere[function] += count
    if not samples:
        return [f"{name}: no samples"]
    lines = [f"{name}: {samples} samples; self / total % of them:"]
    for function, count in own.most_common(top):
        lines.append(f"  self  {100 * count / samples:5.1f} %  {function}")
    # The event loop and main() are on nearly every stack: what is below them is what tells.
    below = [(function, count) for function, count in anywhere.most_common() if count < SCAFFOLD * samples]
    for function, count in below[:top]:
        lines.append(f"  total {100 * count / samples:5.1f} %  {function}")
    return lines


def _function(frame: str) -> str:
    """`function (path/to/module.py:line)` -> `function (module.py)`: lines apart, a function is one."""
    function, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0].rstrip(")")
    return f"{function} ({module})" if module else function
