"""Local stack runner: throwaway Postgres, Redis and SoftHSM2, plus the vault, the simulator and the switch.

Everything listens on free loopback ports and lives under a run directory (``.run/`` by default). Each
service can be replaced by an existing one through environment variables (``DATABASE_URL``,
``REDIS_URL``). Every process started here is a child that dies with us (PR_SET_PDEATHSIG) and is stopped
in reverse order by ``Stack.stop()``, so nothing is left behind even when the runner itself is killed.

Used by ``make up`` / ``make demo`` (``python -m switch.dev.devstack``), by ``make bench`` and by the test
harness (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_SWITCH = REPO_ROOT / "schema.sql"
SCHEMA_VAULT = REPO_ROOT / "vault" / "schema.sql"
READY_TIMEOUT_S = 60.0
# Supervision (`make up`): a service that dies is started again after a backoff; one that dies more than
# RESTARTS_MAX times within RESTART_WINDOW_S stops the whole stack, which never serves on half of itself.
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 8.0
RESTARTS_MAX = 5
RESTART_WINDOW_S = 60.0
MAC_MASTER_KEYS_FILE = "mac-master-keys.json"  # Under the run directory, mode 0600.
MAC_NETWORKS = ("visa", "mastercard", "generic")
PR_SET_PDEATHSIG = 1


POSTGRES_CHECKPOINTS = ("-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=15min", "-c", "wal_compression=lz4")


def co_located_workers() -> int:
    """Switch workers for a stack that shares its machine with Postgres, the vault, Redis, the simulator and
    the load generator: half the cores, at least one. A worker group-commits what its own requests bring, so
    the CPU a payment costs falls as the requests in flight per worker rise. On 2 cores, 128 connections of
    the mix, one worker: 1,200 payments/s at 1,400 µs of machine CPU a payment, p99 124 ms; two: 1,109/s at
    1,762 µs, p99 180 ms (medians of three, docs/performance.md). `switch serve` alone on a machine defaults
    to one worker a core."""
    return max(1, (os.cpu_count() or 2) // 2)


class StackError(RuntimeError):
    """A service of the local stack could not be started."""


FREE_PORT_TRIES = 1_000
_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port the kernel offers, never one this process has handed out before (a small race
    with other processes remains; we retry on bind failure). The kernel may offer a port again once the probe
    closes, and the switch binds with SO_REUSEPORT: two switches given the same port both bind it and share its
    connections. The crash drills start a dozen switches at once, and a drill's payment was once served by
    another drill's switch (its failpoint never fired)."""
    for _ in range(FREE_PORT_TRIES):
        port = _kernel_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise StackError(f"no loopback port this process has not handed out in {FREE_PORT_TRIES} tries")


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: the kernel sends SIGTERM if the runner dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_postgres_bin() -> Path:
    """The directory holding initdb, postgres and pg_isready: PATH first (symlinks resolved), then the
    newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=lambda p: int(p.split("/")[-2]), reverse=True)]
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "postgres", "pg_isready")):
            return directory
    raise StackError("PostgreSQL server binaries not found (apt-get install postgresql, or run `make setup`)")


def find_softhsm_module() -> str:
    for path in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/local/lib/softhsm/libsofthsm2.so"):
        if os.path.exists(path):
            return path
    raise StackError("libsofthsm2.so not found (apt-get install softhsm2, or run `make setup`)")


def mac_master_keys_file(run_dir: Path) -> Path:
    """The stack's MAC master keys (one per network), made once: the vault imports them into the HSM, the
    simulator (the far end) reads its own copy. Written 0600 and never printed."""
    from switch.iso.mac import MASTER_KEY_BYTES, format_master_keys

    path = run_dir / MAC_MASTER_KEYS_FILE
    if not path.exists():
        text = format_master_keys({name: secrets.token_bytes(MASTER_KEY_BYTES) for name in MAC_NETWORKS})
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
    return path


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    argv: list[str] = field(default_factory=list)      # to start it again (drills, supervision)
    env: dict[str, str] | None = None
    user: str | None = None


@dataclass
class HsmToken:
    module: str
    conf_path: str
    label: str
    pin: str

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": self.conf_path, "HSM_MODULE": self.module,
                "HSM_TOKEN_LABEL": self.label, "HSM_PIN": self.pin}


@dataclass
class Stack:
    """Starts and stops the services of one local stack. Not thread-safe; one instance per run."""

    run_dir: Path
    services: list[Service] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    database_admin_url: str = ""
    database_url: str = ""
    vault_database_url: str = ""
    redis_url: str = ""
    hsm: HsmToken | None = None
    vault_socket: str = ""
    vault_credential: str = ""
    vault_http_url: str = ""
    vault_ops_url: str = ""                 # the vault's /metrics and /healthz
    networks: dict[str, dict[str, object]] = field(default_factory=dict)
    simulator_control_url: str = ""
    switch_url: str = ""
    switch_ops_url: str = ""
    switch_tcp_port: int = 0                # the merchant TCP protocol (docs/merchant-protocol.md)
    tls: bool = False               # HTTPS on the merchant port, with a throwaway self-signed pair
    # Load generators and tests send thousands of requests a second from one address and key: they raise
    # the limits (per address for the switch, per key for the merchants they seed); `make up` keeps the
    # defaults.
    address_rate_limit_per_s: int | None = None
    merchant_rate_limit_per_s: int | None = None
    # The screening rules seeded merchants start with: "default", or "lists" for load tests, whose few
    # cards would trip every velocity rule (docs/fraud.md).
    fraud_rules: str = "default"
    tls_ca_file: str = ""           # the certificate clients verify the switch against (when `tls`)
    api_key: str = ""
    # Settings for the switch server only, e.g. a short webhook retry schedule for the tests.
    switch_server_env: dict[str, str] = field(default_factory=dict)
    # pg_stat_statements loaded and created (the bench's --statements profile of Postgres): off by default,
    # as it costs every statement a little.
    statements: bool = False

    # ----- process plumbing -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              user: str | None = None, stop_signal: int = signal.SIGTERM) -> Service:
        log_path = self.run_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns the descriptor after fork
        full_env = {**os.environ, **(env or {})}
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=full_env, user=user, preexec_fn=_die_with_parent, cwd=self.run_dir)
        log.close()
        service = Service(name, process, log_path, stop_signal, argv, env, user)
        self.services.append(service)
        return service

    def respawn(self, service: Service) -> Service:
        """Start a service that exited (or was killed) again, with the same command, in its place."""
        assert service.process.poll() is not None, f"{service.name} is still running"
        self.services.remove(service)
        return self.spawn(service.name, service.argv, env=service.env, user=service.user,
                          stop_signal=service.stop_signal)

    def supervise(self) -> list[str]:
        """One pass over the services: reap any that exited (no zombies) and start it again after its
        backoff; returns the names restarted. Raises StackError for one that keeps dying."""
        restarted = []
        for service in list(self.services):
            code = service.process.poll()
            if code is None:
                continue
            now = time.monotonic()
            history = [t for t in self.restarts.get(service.name, []) if now - t < RESTART_WINDOW_S]
            if len(history) >= RESTARTS_MAX:
                raise StackError(f"{service.name} exited (code {code}) {len(history) + 1} times within "
                                 f"{RESTART_WINDOW_S:.0f} s; stopping the stack. See {service.log_path}")
            delay_s = min(RESTART_DELAY_S * 2 ** len(history), RESTART_DELAY_MAX_S)
            print(f"devstack: {service.name} exited (code {code}); starting it again in {delay_s:.1f} s "
                  f"(restart {len(history) + 1} within {RESTART_WINDOW_S:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(delay_s)
            self.restarts[service.name] = [*history, time.monotonic()]
            self.respawn(service)
            restarted.append(service.name)
        return restarted

    def restart_postgres(self, shutdown_signal: int = signal.SIGQUIT) -> None:
        """Stop Postgres as `pg_ctl stop -m immediate` does (SIGQUIT to the postmaster: no checkpoint, every
        connection cut), start it again on the same data and port, and wait until it accepts connections."""
        service = next(s for s in self.services if s.name == "postgres")
        service.process.send_signal(shutdown_signal)
        service.process.wait(timeout=30)
        port = int(service.argv[service.argv.index("-p") + 1])
        self._wait_postgres(find_postgres_bin(), port, self.respawn(service))

    def wait_for_line(self, service: Service, marker: str, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Wait until the service's log holds a line starting with ``marker``; return that line."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in service.log_path.read_text(errors="replace").splitlines():
                if line.startswith(marker):
                    return line
            if service.process.poll() is not None:
                raise StackError(f"{service.name} exited with {service.process.returncode}; "
                                 f"see {service.log_path}:\n{self._tail(service.log_path)}")
            time.sleep(0.05)
        raise StackError(f"{service.name} not ready after {timeout_s:.0f}s; see {service.log_path}")

    @staticmethod
    def _tail(path: Path, lines: int = 20) -> str:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop services one by one in reverse start order (the switch before the databases it writes to),
        then remove temporary directories."""
        for service in reversed(self.services):
            if service.process.poll() is None:
                service.process.send_signal(service.stop_signal)
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=5)
        self.services.clear()
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.temp_dirs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- Postgres -----------------------------------------------------------------------------------

    def start_postgres(self) -> None:
        """A throwaway cluster with the switch and vault roles, each owning only its own schema."""
        if os.environ.get("DATABASE_URL"):
            self.database_url = os.environ["DATABASE_URL"]
            self.vault_database_url = os.environ.get("VAULT_DATABASE_URL", self.database_url)
            self.database_admin_url = os.environ.get("DATABASE_ADMIN_URL", self.database_url)
            return
        bin_dir = find_postgres_bin()
        # initdb and postgres refuse to run as root; as root we run them as the `postgres` user, whose
        # data directory must sit where that user can reach it (a clone under /root is not).
        as_root = os.geteuid() == 0
        user = "postgres" if as_root else None
        base = Path(tempfile.mkdtemp(prefix="switch-pg-")) if as_root else self.run_dir / "pg"
        if as_root:
            self.temp_dirs.append(base)
            entry = pwd.getpwnam("postgres")
            os.chown(base, entry.pw_uid, entry.pw_gid)
        data_dir = base / "data"
        admin_password = secrets.token_hex(16)
        password_file = base / "pw"
        password_file.write_text(admin_password)
        if as_root:
            os.chown(password_file, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        self._run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-E", "UTF8",
                   "--locale=C", "--auth=scram-sha-256", f"--pwfile={password_file}", "--no-sync"], user=user)
        password_file.unlink()
        port = free_port()
        service = self.spawn("postgres", [
            str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={base}", "-c", "max_connections=300",
            "-c", "shared_buffers=256MB", "-c", "logging_collector=off",
            # Checkpoints as a write-heavy server spaces them: at 1 GB of WAL (the default) the bench's load
            # forced one every 40 s, each followed by a full page image of every page written again.
            *POSTGRES_CHECKPOINTS,
            *(["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track_planning=on"]
              if self.statements else []),
        ], user=user, stop_signal=signal.SIGINT)
        self._wait_postgres(bin_dir, port, service)
        admin_url = f"postgresql://postgres:{admin_password}@127.0.0.1:{port}/postgres"
        self.database_admin_url = admin_url.rsplit("/", 1)[0] + "/switch"  # only the database name changes
        self._create_database(admin_url, port)

    def _run(self, argv: list[str], *, user: str | None = None, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, user=user, cwd="/",
                                env={**os.environ, **(env or {})}, check=False)
        if result.returncode != 0:
            raise StackError(f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result.stdout

    def _wait_postgres(self, bin_dir: Path, port: int, service: Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            probe = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True, check=False)
            if probe.returncode == 0:
                return
            if service.process.poll() is not None:
                raise StackError(f"postgres exited; see {service.log_path}:\n{self._tail(service.log_path)}")
            time.sleep(0.1)
        raise StackError("postgres not ready in time")

    def _create_database(self, admin_url: str, port: int) -> None:
        """Create the database, one role per zone, and apply each zone's schema as that role."""
        switch_password, vault_password = secrets.token_hex(16), secrets.token_hex(16)
        self._psql(admin_url, f"""
            CREATE ROLE switch_app LOGIN PASSWORD '{switch_password}';
            CREATE ROLE vault_app LOGIN PASSWORD '{vault_password}';
            CREATE DATABASE switch OWNER switch_app;
        """)
        switch_admin = admin_url.rsplit("/", 1)[0] + "/switch"
        self._psql(switch_admin, "GRANT CREATE ON DATABASE switch TO vault_app;"
                                 "REVOKE ALL ON SCHEMA public FROM PUBLIC;"
                                 "ALTER SCHEMA public OWNER TO switch_app;")
        if self.statements:
            self._psql(switch_admin, "CREATE EXTENSION pg_stat_statements; GRANT pg_read_all_stats TO switch_app;")
        self.database_url = f"postgresql://switch_app:{switch_password}@127.0.0.1:{port}/switch"
        self.vault_database_url = f"postgresql://vault_app:{vault_password}@127.0.0.1:{port}/switch"
        self._psql(self.database_url, SCHEMA_SWITCH.read_text())
        if SCHEMA_VAULT.exists():
            self._psql(self.vault_database_url, SCHEMA_VAULT.read_text())

    def _psql(self, url: str, sql: str) -> None:
        bin_dir = find_postgres_bin()
        psql = shutil.which("psql") or str(bin_dir / "psql")
        result = subprocess.run([psql, url, "-v", "ON_ERROR_STOP=1", "-q", "-X"], input=sql,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.strip()[-2000:]}")

    # ----- Redis --------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """redis-server without persistence: Redis is never the only copy of anything."""
        if os.environ.get("REDIS_URL"):
            self.redis_url = os.environ["REDIS_URL"]
            return
        binary = shutil.which("redis-server")
        if not binary:
            raise StackError("redis-server not found (apt-get install redis-server, or run `make setup`)")
        port = free_port()
        service = self.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.run_dir), "--daemonize", "no",
                                       "--maxclients", "2000"])
        self.wait_for_line_containing(service, "Ready to accept connections")
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def wait_for_line_containing(self, service: Service, text: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if text in service.log_path.read_text(errors="replace"):
                return
            if service.process.poll() is not None:
                raise StackError(f"{service.name} exited; see {service.log_path}")
            time.sleep(0.05)
        raise StackError(f"{service.name} not ready in time")

    # ----- SoftHSM2 -----------------------------------------------------------------------------------

    def init_hsm(self) -> HsmToken:
        """A SoftHSM2 token with its own config file and token directory under the run directory."""
        if os.environ.get("HSM_PIN") and os.environ.get("SOFTHSM2_CONF"):
            self.hsm = HsmToken(os.environ.get("HSM_MODULE") or find_softhsm_module(),
                                os.environ["SOFTHSM2_CONF"], os.environ.get("HSM_TOKEN_LABEL", "switch"),
                                os.environ["HSM_PIN"])
            return self.hsm
        util = shutil.which("softhsm2-util")
        if not util:
            raise StackError("softhsm2-util not found (apt-get install softhsm2, or run `make setup`)")
        token_dir = self.run_dir / "hsm-tokens"
        token_dir.mkdir(mode=0o700, exist_ok=True)
        conf = self.run_dir / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
                        "slots.removable = false\n")
        pin = secrets.token_hex(8)
        self._run([util, "--init-token", "--free", "--label", "switch", "--pin", pin,
                   "--so-pin", secrets.token_hex(8)], env={"SOFTHSM2_CONF": str(conf)})
        self.hsm = HsmToken(find_softhsm_module(), str(conf), "switch", pin)
        return self.hsm

    # ----- our own processes --------------------------------------------------------------------------

    def start_vault(self) -> None:
        if self.hsm is None:
            self.init_hsm()
        assert self.hsm is not None
        self.vault_socket = str(self.run_dir / "vault.sock")
        self.vault_credential = secrets.token_urlsafe(32)
        http_port, ops_port = free_port(), free_port()
        service = self.spawn("vault", [sys.executable, "-m", "vault", "serve"], env={
            **self.hsm.env(), "VAULT_DATABASE_URL": self.vault_database_url,
            "VAULT_SOCKET": self.vault_socket, "VAULT_CREDENTIAL": self.vault_credential,
            "VAULT_HTTP_PORT": str(http_port), "VAULT_MAC_KEYS_FILE": str(mac_master_keys_file(self.run_dir)),
            "VAULT_OPS_PORT": str(ops_port),
        })
        self.wait_for_line(service, "VAULT READY")
        self.vault_http_url = f"http://127.0.0.1:{http_port}"
        self.vault_ops_url = f"http://127.0.0.1:{ops_port}"

    def start_simulator(self, extra_args: list[str] | None = None) -> None:
        tls_args: list[str] = []
        if self.tls:                            # the links speak TLS to the simulator too
            cert, key = self_signed_pair(self.run_dir / "tls")
            tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
        service = self.spawn("acquirer_sim", [
            sys.executable, "-m", "acquirer_sim", "--host", "127.0.0.1", "--visa-port", "0",
            "--mastercard-port", "0", "--generic-port", "0", "--control-port", "0",
            "--settlement-dir", str(self.run_dir / "settlement"),
            "--mac-key-file", str(mac_master_keys_file(self.run_dir)), *tls_args, *(extra_args or []),
        ])
        line = self.wait_for_line(service, "SIM READY")
        ports = dict(part.split("=", 1) for part in line.split()[2:])
        for flag, name in (("--visa-port", "visa"), ("--mastercard-port", "mastercard"),
                           ("--generic-port", "generic"), ("--control-port", "control")):
            service.argv[service.argv.index(flag) + 1] = ports[name]    # a restart keeps the same ports
        tls = {"tls_ca_file": str(self_signed_pair(self.run_dir / "tls")[0])} if self.tls else {}
        self.networks = {
            name: {"profile": name, "endpoints": [{"host": "127.0.0.1", "port": int(ports[name])}], **tls}
            for name in ("visa", "mastercard", "generic")
        }
        self.simulator_control_url = f"http://127.0.0.1:{ports['control']}"

    def switch_env(self) -> dict[str, str]:
        """Everything a switch process (server or CLI) needs to reach this stack."""
        import json

        limits = {}
        if self.address_rate_limit_per_s:
            limits = {"SWITCH_RATE_LIMIT_ADDRESS_PER_S": str(self.address_rate_limit_per_s),
                      "SWITCH_RATE_LIMIT_ADDRESS_BURST": str(2 * self.address_rate_limit_per_s)}
        return {**limits,
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "VAULT_SOCKET": self.vault_socket, "VAULT_CREDENTIAL": self.vault_credential,
            "SWITCH_NETWORKS": json.dumps(self.networks),
            "SWITCH_REQUEST_HMAC_KEY": self._request_hmac_key(),
        }

    def _request_hmac_key(self) -> str:
        key_file = self.run_dir / "request-hmac.key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip()

    def start_switch(self, workers: int = 1, port: int | None = None, name: str = "switch",
                     extra_env: dict[str, str] | None = None) -> Service:
        port = port or free_port()
        ops_port, tcp_port = free_port(), free_port()
        tls_env = self._tls_env() if self.tls else {}
        service = self.spawn(name, [sys.executable, "-m", "switch", "serve", "--host", "127.0.0.1",
                                    "--port", str(port), "--workers", str(workers), "--ops-port", str(ops_port)],
                             env={**self.switch_env(), **tls_env, "SWITCH_WEBHOOKS_ALLOW_LOOPBACK": "1",
                                  "SWITCH_TCP_PORT": str(tcp_port),
                                  **self.switch_server_env, **(extra_env or {})})
        self.wait_for_line(service, "SWITCH READY")
        self.switch_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        self.switch_ops_url = f"http://127.0.0.1:{ops_port}"
        self.switch_tcp_port = tcp_port
        return service

    def _tls_env(self) -> dict[str, str]:
        cert, key = self_signed_pair(self.run_dir / "tls")
        self.tls_ca_file = str(cert)
        return {"SWITCH_TLS_CERT_FILE": str(cert), "SWITCH_TLS_KEY_FILE": str(key)}

    def seed_merchant(self, name: str = "demo-shop", fraud_rules: str | None = None) -> str:
        """Create a merchant through the real CLI and return the API key it printed once."""
        limit = ["--per-s", str(self.merchant_rate_limit_per_s)] if self.merchant_rate_limit_per_s else []
        limit += ["--fraud-rules", fraud_rules or self.fraud_rules]
        result = subprocess.run([sys.executable, "-m", "switch", "merchants", "create", "--name", name,
                                 "--quiet", *limit], capture_output=True, text=True, env={**os.environ,
                                 **self.switch_env()}, check=False)
        if result.returncode != 0:
            raise StackError(f"merchant creation failed: {result.stderr.strip()}")
        api_key = result.stdout.strip().splitlines()[-1]
        if not self.api_key:
            self.api_key = api_key
        return api_key

    def start_all(self, workers: int = 1) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_redis()
        self.init_hsm()
        self.start_vault()
        self.start_simulator()
        self.start_switch(workers=workers)
        self.seed_merchant()


def self_signed_pair(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost (P-256, valid 7 days) and its key (mode 0600),
    for the dev stack and the tests only."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "switch.crt", directory / "switch.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payment-switch dev stack")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def new_run_dir(base: Path | None = None) -> Path:
    """A fresh directory under ``.run/`` (git-ignored) for one stack's files and logs."""
    root = base or REPO_ROOT / ".run"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


def serve_until_signal(stack: Stack) -> None:
    """Supervise the stack until SIGINT or SIGTERM: a dead child is started again (StackError when one
    keeps dying, and the caller stops everything)."""
    stop = {"flag": False}

    def handler(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["flag"]:
        stack.supervise()
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switch.dev.devstack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "demo"], help="up: run in the foreground; demo: scripted flow")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("SWITCH_WORKERS", "2")))
    parser.add_argument("--keep-run-dir", action="store_true", help="keep logs and data under .run/ afterwards")
    parser.add_argument("--tls", action="store_true", help="HTTPS on the merchant port (throwaway self-signed pair)")
    args = parser.parse_args(argv)
    run_dir = new_run_dir()
    stack = Stack(run_dir=run_dir, tls=args.tls)
    # SIGTERM must unwind through the finally below, so every child is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        stack.start_all(workers=args.workers)
        if args.command == "up":
            print(f"READY url={stack.switch_url} api_key={stack.api_key} ops={stack.switch_ops_url} "
                  f"tcp=127.0.0.1:{stack.switch_tcp_port}", flush=True)
            print(f"  run dir: {run_dir} (removed on exit unless --keep-run-dir)  simulator control: "
                  f"{stack.simulator_control_url}  vault tokens: {stack.vault_http_url}/v1/tokens  "
                  "Ctrl-C stops everything", flush=True)
            serve_until_signal(stack)
            return 0
        from switch.dev.demo import DayEnd, run_demo

        day = DayEnd(stack.simulator_control_url, stack.switch_env(), run_dir)
        return run_demo(stack.switch_url, stack.api_key, stack.tls_ca_file or None, day, stack.switch_tcp_port)
    except StackError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        if args.keep_run_dir:
            print(f"logs kept in {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
