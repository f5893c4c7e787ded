"""A dedicated stack for tests that kill, stop or restart its parts (the shared session `stack` is never
touched): its own run directory, Postgres, Redis, SoftHSM2 token, vault and simulator, and switches that
tests start and stop themselves, with short budgets and recovery intervals so drills stay fast.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from loadtest.httpclient import Client
from switch.dev.devstack import Service, Stack, free_port
from tests.conftest import SIMULATOR_ARGS

# Short budgets: a payment left in flight is recovered about 1.5 s after it started, a leased outbox row
# is retried 1.5 s after its claim, and a Redis lock left by a dead worker expires after 2 s.
FAST_ENV = {
    "SWITCH_PAYMENT_BUDGET_S": "1.0",
    "SWITCH_NETWORK_TIMEOUT_S": "0.8",
    "SWITCH_OUTBOX_SEND_TIMEOUT_S": "0.5",
    "SWITCH_OUTBOX_LEASE_S": "1.5",
    "SWITCH_OUTBOX_POLL_INTERVAL_S": "0.2",
    "SWITCH_RECOVERY_GRACE_S": "0.2",
    "SWITCH_IDEMPOTENCY_LOCK_TTL_S": "2",
    "SWITCH_DATABASE_POOL_SIZE_MAX": "8",
    "SWITCH_LOG_LEVEL": "WARNING",
}


@dataclass
class Switch:
    service: Service
    url: str
    ops_url: str = ""

    @property
    def pid(self) -> int:
        return self.service.process.pid

    def worker_pids(self) -> list[int]:
        """The supervisor's children: its worker processes."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(pid) for pid in text.split()]


class SoloStack:
    def __init__(self, run_dir: Path) -> None:
        self.stack = Stack(run_dir=run_dir, address_rate_limit_per_s=1_000_000, merchant_rate_limit_per_s=1_000_000,
                           fraud_rules="lists")    # load through a few cards: see tests/conftest.py
        self.api_key = ""

    def start(self) -> None:
        stack = self.stack
        stack.run_dir.mkdir(parents=True, exist_ok=True)
        stack.start_postgres()
        stack.start_redis()
        stack.init_hsm()
        stack.start_vault()
        stack.start_simulator(SIMULATOR_ARGS)
        self.api_key = stack.seed_merchant("solo-shop")

    def stop(self) -> None:
        self.stack.stop()

    @property
    def redis_process(self) -> subprocess.Popen[bytes]:
        return next(s.process for s in self.stack.services if s.name == "redis")

    # ----- switches ---------------------------------------------------------------------------------

    def start_switches(self, envs: dict[str, dict[str, str]], workers: int = 1) -> dict[str, Switch]:
        """Start one switch per name (all spawned first, then awaited: they boot in parallel)."""
        started: dict[str, Switch] = {}
        for name, env in envs.items():
            port, ops_port = free_port(), free_port()
            argv = [sys.executable, "-m", "switch", "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(workers), "--ops-port", str(ops_port)]
            service = self.stack.spawn(name, argv, env={**self.stack.switch_env(), **FAST_ENV, **env})
            started[name] = Switch(service, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}")
        for switch in started.values():
            self.stack.wait_for_line(switch.service, "SWITCH READY")
        return started

    def start_switch(self, name: str = "switch", env: dict[str, str] | None = None) -> Switch:
        return self.start_switches({name: env or {}})[name]

    def stop_switch(self, switch: Switch, *, kill: bool = False) -> None:
        """SIGTERM (a clean stop), or SIGKILL of the supervisor and its workers (a crash)."""
        if kill:
            workers = switch.worker_pids()
            for pid in [switch.pid, *workers]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(workers)
        elif switch.service.process.poll() is None:
            switch.service.process.send_signal(signal.SIGTERM)
        switch.service.process.wait(timeout=20)
        self.stack.services.remove(switch.service)

    def client(self, switch: Switch) -> Client:
        return Client(switch.url, self.api_key)

    async def pool(self) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(self.stack.database_url, min_size=1, max_size=4)
        assert pool is not None
        return pool

    def ledger_check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switch", "ledger", "check"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **self.stack.switch_env()}, check=False)


def _wait_gone(pids: list[int], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
            if state == "Z":
                break                       # a zombie: dead, waiting for its parent to reap it
            time.sleep(0.02)


async def eventually(probe: Any, timeout_s: float, interval_s: float = 0.1) -> Any:
    """Await `probe()` until it returns something truthy; its last value (falsy) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)
