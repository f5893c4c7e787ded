"""The supervisor of ``switch serve``: starts N worker processes on one port (SO_REUSEPORT), prints
``SWITCH READY url=...`` once every worker reports ready through a pipe, forwards SIGTERM / SIGINT to the
workers, and restarts a worker that dies (its in-flight payments are resolved by recovery once their
deadline passes).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from switch.process.worker import configure_logging

log = logging.getLogger("switch")

WORKER_READY_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, ops_host: str, ops_port: int) -> None:
        self.host, self.port, self.count = host, port, workers
        self.ops_host, self.ops_port = ops_host, ops_port
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.restarts: Any = None

    def spawn(self, index: int) -> int:
        """Start worker `index`; returns the read end of its readiness pipe."""
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "SWITCH_READY_FD": str(write_fd)}
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "switch", "worker", "--host", self.host, "--port", str(self.port),
             "--index", str(index), "--ops-host", self.ops_host, "--ops-port", str(self.ops_port)],
            env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        os.close(write_fd)
        return read_fd

    def run(self) -> int:
        configure_logging("supervisor")
        self._prepare_metrics_dir()
        self.restarts = self._restart_counter()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        pipes = [self.spawn(index) for index in range(self.count)]
        if not all(self._wait_ready(fd) for fd in pipes):
            log.error("a worker failed to start")
            self._stop(signal.SIGTERM, None)
            self._reap_all()
            return 1
        scheme = "https" if os.environ.get("SWITCH_TLS_CERT_FILE") else "http"
        print(f"SWITCH READY url={scheme}://{self.host}:{self.port} ops_url=http://{self.ops_host}:{self.ops_port} "
              f"workers={self.count}", flush=True)
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
                self.restarts.inc()
                self._forget_gauges(process.pid)
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
    def _restart_counter() -> Any:
        """Made once the metrics directory is set: the supervisor imported prometheus-client before, in its
        single-process mode, so its value is switched to the workers' shared files here. Exported at 0 from
        the start, by whichever worker answers the scrape."""
        from prometheus_client import Counter, values

        values.ValueClass = values.MultiProcessValue()
        return Counter("switch_worker_restarts_total", "Workers that died and were started again by the supervisor",
                       registry=None)

    @staticmethod
    def _forget_gauges(pid: int) -> None:
        """A dead worker's live gauges (its breakers, in-flight requests, backlog samples) leave the
        exposition; its counters stay, as counters must."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)

    @staticmethod
    def _prepare_metrics_dir() -> None:
        """prometheus-client multiprocess mode: one directory of mmap files shared by the workers."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="switch-metrics-")
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
