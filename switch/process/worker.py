"""Switch processes: ``serve`` supervises N workers; each worker is one uvloop event loop serving the
merchant API on the shared port (SO_REUSEPORT), with its own Postgres pool, Redis client, vault
connections and network links.

The supervisor prints ``SWITCH READY url=...`` once every worker reports ready through a pipe, forwards
SIGTERM / SIGINT to the workers, and restarts a worker that dies (its in-flight payments are resolved by
recovery once their deadline passes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import redis.asyncio as redis
import uvloop

from switch import httpserver, metrics, store
from switch.api import App
from switch.config import Settings, load_settings
from switch.idempotency import Idempotency
from switch.iso.messages import mask_pan
from switch.merchants import ApiKeyCache
from switch.network.router import Networks
from switch.outbox import OutboxSender
from switch.payments import PaymentEngine
from switch.refunds import RefundEngine
from switch.trace import TraceAllocator
from switch.vault_client import VaultClient

log = logging.getLogger("switch")

REAPER_INTERVAL_S = 300.0
WORKER_READY_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


def configure_logging(tag: str) -> None:
    logging.basicConfig(level=os.environ.get("SWITCH_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format=f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s")


# ----- worker ------------------------------------------------------------------------------------------

def on_late_response(network: str, message: dict[str, object]) -> None:
    """A response after its request timed out. Its payment was already failed and a reversal queued in the
    same transaction as the timeout, so a late approval can never stand; here we count and log it."""
    mti = str(message.get("t", ""))
    metrics.late_responses.labels(network, mti).inc()
    pan = str(message.get("2", ""))
    log.warning("late %s from %s: rrn=%s stan=%s code=%s pan=%s", mti, network, message.get("37"),
                message.get("11"), message.get("39"), mask_pan(pan) if pan else "-")


@dataclass
class Worker:
    settings: Settings
    host: str
    port: int

    async def run(self, ready_fd: int | None) -> None:
        settings = self.settings
        pool = await store.create_pool(settings.database_url, settings.database_pool_size_max)
        # No socket_timeout: redis-py would then start a task per send and a timer per reply read. The
        # pipeliner bounds each whole round trip instead (switch.idempotency.REDIS_TIMEOUT_S).
        redis_client = redis.Redis.from_url(settings.redis_url, max_connections=256, socket_timeout=None,
                                            socket_connect_timeout=2.0)
        vault = VaultClient(settings.vault_socket, settings.vault_credential)
        await vault.connect()
        # MAC session keys come from the vault, derived in its HSM, once per link sign-on.
        networks = Networks(settings.networks, on_late_response, mac_key_source=vault.mac_key)
        await networks.start()
        outbox = OutboxSender(pool, vault, networks, settings.acquirer_id,
                              send_timeout_s=settings.outbox_send_timeout_s, lease_s=settings.outbox_lease_s,
                              poll_interval_s=settings.outbox_poll_interval_s,
                              recovery_grace_s=settings.recovery_grace_s)
        payments = PaymentEngine(settings, pool, vault, networks, TraceAllocator(pool), outbox)
        await payments.writer.start()
        idempotency = Idempotency(redis_client, pool, settings.request_hmac_key, settings.idempotency_lock_ttl_s,
                                  settings.idempotency_retention_s,
                                  lock_stale_after_s=settings.payment_budget_s + settings.recovery_grace_s)
        app = App(payments, RefundEngine(payments), idempotency, ApiKeyCache(pool), pool, redis_client, vault,
                  networks)
        server = await httpserver.serve(app.handle, self.host, self.port)
        outbox.start()
        reaper = asyncio.get_running_loop().create_task(self._reap(pool))
        if ready_fd is not None:
            try:
                os.write(ready_fd, b"ready\n")
            except OSError:
                pass                        # a restarted worker: nobody waits for its readiness
            os.close(ready_fd)
        await self._until_stopped()
        server.close()
        reaper.cancel()
        await outbox.stop()
        await asyncio.sleep(0.2)            # let handlers already running write their final rows
        await payments.writer.close()
        await networks.close()
        await vault.close()
        await redis_client.aclose()
        await pool.close()

    @staticmethod
    async def _until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()

    async def _reap(self, pool: object) -> None:
        while True:
            await asyncio.sleep(REAPER_INTERVAL_S)
            try:
                await store.delete_expired_keys(pool, self.settings.idempotency_retention_s)  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001 - a failed pass is retried next interval
                log.warning("idempotency reaper failed: %s", error.__class__.__name__)


def run_worker(host: str, port: int, index: int) -> int:
    configure_logging(f"worker-{index}")
    ready_fd = int(os.environ["SWITCH_READY_FD"]) if os.environ.get("SWITCH_READY_FD") else None
    uvloop.install()
    asyncio.run(Worker(load_settings(), host, port).run(ready_fd))
    return 0


# ----- supervisor --------------------------------------------------------------------------------------

class Supervisor:
    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host, self.port, self.count = host, port, workers
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def spawn(self, index: int) -> int:
        """Start worker `index`; returns the read end of its readiness pipe."""
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "SWITCH_READY_FD": str(write_fd)}
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "switch", "worker", "--host", self.host, "--port", str(self.port),
             "--index", str(index)], env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        os.close(write_fd)
        return read_fd

    def run(self) -> int:
        configure_logging("supervisor")
        self._prepare_metrics_dir()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        pipes = [self.spawn(index) for index in range(self.count)]
        if not all(self._wait_ready(fd) for fd in pipes):
            log.error("a worker failed to start")
            self._stop(signal.SIGTERM, None)
            self._reap_all()
            return 1
        print(f"SWITCH READY url=http://{self.host}:{self.port} workers={self.count}", flush=True)
        while not self.stopping:
            self._restart_dead()
            time.sleep(0.2)
        return self._reap_all()

    @staticmethod
    def _wait_ready(fd: int) -> bool:
        import select

        readable, _, _ = select.select([fd], [], [], WORKER_READY_TIMEOUT_S)
        ok = bool(readable) and os.read(fd, 16).startswith(b"ready")
        os.close(fd)
        return ok

    def _restart_dead(self) -> None:
        for index, process in list(self.processes.items()):
            if process.poll() is not None and not self.stopping:
                log.error("worker %d exited with %s; restarting", index, process.returncode)
                time.sleep(RESTART_DELAY_S)
                os.close(self.spawn(index))

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _reap_all(self) -> int:
        codes = []
        for process in self.processes.values():
            try:
                codes.append(process.wait(timeout=20))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1

    @staticmethod
    def _prepare_metrics_dir() -> None:
        """prometheus-client multiprocess mode: one directory of mmap files shared by the workers."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="switch-metrics-")
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
