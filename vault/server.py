"""The vault process: a Unix-socket server (asyncio.Protocol on uvloop) in front of ``Vault``.

Wire contract: ``switch.vault_protocol`` (framing, hello, pipelined requests answered as they finish).
Layers: ``VaultProtocol`` knows frames and the hello handshake; ``VaultApp`` maps requests to the vault
and errors to codes; ``serve`` owns the life cycle (HSM, pool, socket, signals).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import cast

import asyncpg
import msgspec

from switch.common import collector
from switch.common.cards import CardError, CardNumber, SecretStr
from switch.common.errors import ConfigError
from switch.common.pg_settings import KEYED_ONLY, NO_JIT
from switch.common.writes import CoalescedWriter
from switch.vault_protocol import (
    CALLER_LENGTH_MAX,
    CREDENTIAL_LENGTH_MAX,
    ENCODER,
    FRAMING,
    HELLO_DECODER,
    HELLO_ID,
    MERCHANT_ID_LENGTH_MAX,
    REQUEST_DECODER,
    DetokenizeRequest,
    FrameError,
    MacKeyRequest,
    PingRequest,
    Request,
    Response,
    TokenizeRequest,
    VaultError,
    encode_frame,
)
from vault.hsm import Hsm, HsmError, kek_label
from vault.mac_keys import MacKeys
from vault.metrics import RequestStats, VaultCollector, registry_for
from vault.ops import start_ops_server
from vault.public_api import start_public_api
from vault.service import Vault

log = logging.getLogger("vault.server")

CONNECTIONS_MAX = 256
INFLIGHT_PER_CONNECTION_MAX = 2048
HELLO_TIMEOUT_S = 5.0
SHUTDOWN_GRACE_S = 5.0
POOL_SIZE_MAX_DEFAULT = 16
# Each card path runs one statement at a time (vault.service), so a stuck one (a lock held elsewhere, a bad
# plan) would hold every card request of its path behind it. Postgres cancels it at this bound: its callers
# hear "unavailable" and the path moves on. Above the switch's own 2 s per request, which gives up first.
STATEMENT_TIMEOUT_MS_DEFAULT = 3_000


@dataclass(frozen=True)
class VaultConfig:
    database_url: str
    hsm_module: str
    softhsm2_conf: str
    token_label: str
    pin: str
    socket_path: str
    credential: str
    kek_label: str
    pool_size_max: int
    mac_keys_file: str = ""  # VAULT_MAC_KEYS_FILE: MAC master keys to import into the HSM at start.
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS_DEFAULT  # VAULT_STATEMENT_TIMEOUT_MS; 0: none

    def __repr__(self) -> str:
        return (f"VaultConfig(socket_path={self.socket_path!r}, token_label={self.token_label!r}, "
                f"kek_label={self.kek_label!r}, pin='***', credential='***', database_url='***')")

    @classmethod
    def from_env(cls, *, need_socket: bool = True, environ: dict[str, str] | None = None) -> VaultConfig:
        env = dict(os.environ if environ is None else environ)
        required = ["VAULT_DATABASE_URL", "HSM_MODULE", "HSM_TOKEN_LABEL", "HSM_PIN"]
        if need_socket:
            required += ["VAULT_SOCKET", "VAULT_CREDENTIAL"]
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        pool_size_max = _integer(env, "VAULT_DB_POOL_MAX", POOL_SIZE_MAX_DEFAULT)
        statement_timeout_ms = _integer(env, "VAULT_STATEMENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS_DEFAULT)
        if statement_timeout_ms < 0:
            raise ConfigError("VAULT_STATEMENT_TIMEOUT_MS must be 0 (none) or more")
        return cls(database_url=env["VAULT_DATABASE_URL"], hsm_module=env["HSM_MODULE"],
                   softhsm2_conf=env.get("SOFTHSM2_CONF", ""), token_label=env["HSM_TOKEN_LABEL"],
                   pin=env["HSM_PIN"], socket_path=env.get("VAULT_SOCKET", ""),
                   credential=env.get("VAULT_CREDENTIAL", ""),
                   kek_label=env.get("HSM_KEK_LABEL") or kek_label(1),
                   pool_size_max=pool_size_max, mac_keys_file=env.get("VAULT_MAC_KEYS_FILE", ""),
                   statement_timeout_ms=statement_timeout_ms)


def _integer(env: dict[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, str(default)))
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None


# ----- application: requests → vault → responses ----------------------------------------------------


_OPERATIONS = {TokenizeRequest: "tokenize", DetokenizeRequest: "detokenize", MacKeyRequest: "mac_key",
               PingRequest: "ping"}


class VaultApp:
    def __init__(self, vault: Vault, credential: str, mac_keys: MacKeys | None = None,
                 stats: RequestStats | None = None) -> None:
        self.vault = vault
        self.mac_keys = mac_keys
        self.stats = stats or RequestStats()
        self._credential = credential.encode()
        self.connections: set[VaultProtocol] = set()

    def authenticate(self, credential: str) -> bool:
        return hmac.compare_digest(credential.encode(), self._credential)

    async def handle(self, request: Request, caller: str) -> Response:
        started = time.perf_counter()
        response = await self._answer(request, caller)
        self.stats.observe(_OPERATIONS[type(request)], response.error or "ok", time.perf_counter() - started)
        return response

    async def _answer(self, request: Request, caller: str) -> Response:
        try:
            if isinstance(request, TokenizeRequest):
                return await self._tokenize(request, caller)
            if isinstance(request, DetokenizeRequest):
                return await self._detokenize(request, caller)
            if isinstance(request, MacKeyRequest):
                return await self._mac_key(request, caller)
            return Response(id=request.id, ok=True)
        except VaultError as exc:
            return Response(id=request.id, ok=False, error=exc.code)
        except CardError as exc:
            return Response(id=request.id, ok=False, error=exc.code)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.error("request %d failed: %s", request.id, type(exc).__name__)
            return Response(id=request.id, ok=False, error="unavailable")

    async def _tokenize(self, request: TokenizeRequest, caller: str) -> Response:
        if len(request.merchant_id) > MERCHANT_ID_LENGTH_MAX:
            raise VaultError("invalid_request")
        number = CardNumber(request.number)
        cvc = None if request.cvc is None else SecretStr(request.cvc)
        record = await self.vault.tokenize(request.merchant_id, number, request.exp_month, request.exp_year,
                                           cvc, caller=caller)
        if record.created:
            self.stats.tokens_written += 1
        return Response(id=request.id, ok=True, token=record.token, brand=record.brand, bin=record.bin,
                        last4=record.last4, exp_month=record.exp_month, exp_year=record.exp_year,
                        fingerprint=record.fingerprint.hex())

    async def _mac_key(self, request: MacKeyRequest, caller: str) -> Response:
        """A link's MAC session key, for an authenticated caller only (this runs after the hello)."""
        operation = f"mac_key:{request.network[:32]}"
        try:
            if self.mac_keys is None:
                raise VaultError("not_found")
            key = await self.mac_keys.session_key(request.network, request.generation)
        except VaultError as exc:
            self.vault.audit.record(caller, operation, None, None, exc.code)
            raise
        self.vault.audit.record(caller, operation, None, None, "ok")
        return Response(id=request.id, ok=True, key=key)

    async def _detokenize(self, request: DetokenizeRequest, caller: str) -> Response:
        if len(request.merchant_id) > MERCHANT_ID_LENGTH_MAX:
            raise VaultError("invalid_request")
        card = await self.vault.detokenize(request.merchant_id, request.token, caller)
        return Response(id=request.id, ok=True, token=request.token, brand=card.brand, bin=card.number.bin,
                        last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year,
                        number=card.number.reveal(), cvc=None if card.cvc is None else card.cvc.reveal())


# ----- protocol: frames and handshake -----------------------------------------------------------------


class VaultProtocol(asyncio.Protocol):
    """One client connection. The first frame must be a valid hello; then requests are pipelined."""

    def __init__(self, app: VaultApp) -> None:
        self._app = app
        self._decoder = FRAMING.reader()
        self._transport: asyncio.Transport | None = None
        self._writer: CoalescedWriter | None = None
        self._caller: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._hello_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol interface

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._writer = CoalescedWriter(self._transport, asyncio.get_running_loop())
        if len(self._app.connections) >= CONNECTIONS_MAX:
            log.warning("connection refused: %d connections open", len(self._app.connections))
            self._transport.abort()
            return
        self._app.connections.add(self)
        self._hello_timer = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT_S, self._refuse, "unauthorized")

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError:
            self._refuse("invalid_request")
            return
        for body in frames:
            if self._transport is None or self._transport.is_closing():
                return
            if self._caller is None:
                self._on_hello(body)
            else:
                self._on_request(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._app.connections.discard(self)
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self._transport = None
        if self._writer is not None:
            self._writer.discard()

    # handshake and requests

    def _on_hello(self, body: bytes) -> None:
        try:
            hello = HELLO_DECODER.decode(body)
        except msgspec.DecodeError:
            self._refuse("unauthorized")
            return
        if (len(hello.credential) > CREDENTIAL_LENGTH_MAX or len(hello.caller) > CALLER_LENGTH_MAX
                or not hello.caller.isprintable() or not self._app.authenticate(hello.credential)):
            self._refuse("unauthorized")
            return
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self._caller = hello.caller or "switch"
        self._write(Response(id=HELLO_ID, ok=True))

    def _on_request(self, body: bytes) -> None:
        try:
            request = REQUEST_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            # msgspec's message names the field, never its value. Without an id we cannot answer it.
            log.warning("undecodable request from %s: %s", self._caller, exc)
            self._refuse("invalid_request")
            return
        if isinstance(request, PingRequest):
            self._write(Response(id=request.id, ok=True))
            self._app.stats.observe("ping", "ok", 0.0)          # answered at once, with no work to time
            return
        if len(self._tasks) >= INFLIGHT_PER_CONNECTION_MAX:
            self._write(Response(id=request.id, ok=False, error="unavailable"))
            self._app.stats.observe(_OPERATIONS[type(request)], "unavailable", 0.0)
            return
        assert self._caller is not None
        task = asyncio.get_running_loop().create_task(self._serve(request, self._caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: Request, caller: str) -> None:
        response = await self._app.handle(request, caller)
        self._write(response)

    def _write(self, response: Response) -> None:
        # Answers finished in one loop pass (a batch of card lookups) leave in one write.
        if self._writer is not None:
            self._writer.write(encode_frame(ENCODER.encode(response)))

    def _refuse(self, code: str) -> None:
        """Answer one error frame and close: refused callers learn why, and nothing else."""
        log.warning("connection refused: %s", code)
        self._write(Response(id=HELLO_ID, ok=False, error=code))
        if self._transport is not None and self._writer is not None:
            self._writer.flush()
            self._transport.close()

    async def drain(self) -> None:
        """Wait for in-flight requests (shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_S)

    def close(self) -> None:
        if self._transport is not None and self._writer is not None:
            self._writer.flush()                # answers of the requests drain() waited for
            self._transport.close()


# ----- life cycle ----------------------------------------------------------------------------------------


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool release hook: nothing to reset (asyncpg still rolls back an open transaction first)."""


# The token statements read vault.tokens by its keys, a batch of them at once (unnest). A connection keeps
# the plan it made while the table was small (a new stack) until the next analyze of the table, which
# autovacuum runs at most once a minute and after 10 % growth; in a 30 s bench of the mix, 9,285 sequential
# scans read 75 million rows of a 16,000-row table. Two things keep each card a lookup by its key: every
# card is looked up on its own (LATERAL ... LIMIT 1, vault.service), and sequential scans are off, which
# such a lookup would otherwise take on a table of one page. Measured with a plan made at 50 cards and used
# at 300,000 before any analyze, 14 cards a call: 28 ms a call as a join, 151 ms as a join with sequential
# scans off (a full index scan), 114 ms per card lookups with them on, 0.13 ms with both (0.13-0.20 ms for
# all four once the table is analyzed). A statement with no index to use (key rotation's) still scans.
# Each prepared statement is planned once per connection, generically: for a batch of a few tokens a plan
# for the values at hand looked cheaper than the generic plan (costed for the ten elements the planner
# assumes of an array it cannot see), so the card read was planned again on nearly every call (9,734 plans
# in 12,248 calls of a 60 s bench, 83 µs each against 30 µs to run). Its plan is the same either way: a
# lookup by key per token (tests/vault/test_plans.py).
# No JIT either, as in the switch's pools: its statements are lookups (switch.common.pg_settings).
SESSION_SETTINGS = {**KEYED_ONLY, **NO_JIT, "plan_cache_mode": "force_generic_plan"}


async def create_pool(database_url: str, size_max: int, statement_timeout_ms: int = 0) -> asyncpg.Pool:
    """The vault's pool. reset=: no session state is kept (rotation's table lock ends with its transaction),
    so skip the reset query asyncpg would send on every release. With `statement_timeout_ms`, Postgres
    cancels a statement that runs longer; with 0 the setting is not sent, so the role's or database's own
    default (none unless a DBA set one) stays."""
    settings = dict(SESSION_SETTINGS)
    if statement_timeout_ms:
        settings["statement_timeout"] = str(statement_timeout_ms)
    return await asyncpg.create_pool(database_url, min_size=1, max_size=size_max, reset=_keep_session,
                                     server_settings=settings)


async def open_vault(config: VaultConfig, *, pool_size_max: int | None = None,
                     statement_timeout_ms: int = 0) -> tuple[Hsm, asyncpg.Pool]:
    """Open the HSM session and the database pool (closing the HSM again if the pool fails). The
    server's pool has a statement timeout; the command-line tools' (a rotation, a re-encryption) none."""
    if config.softhsm2_conf:
        # SoftHSM2 reads its configuration path from the environment when the module initialises.
        os.environ["SOFTHSM2_CONF"] = config.softhsm2_conf
    hsm = await asyncio.to_thread(Hsm.open, config.hsm_module, config.token_label, config.pin)
    try:
        pool = await create_pool(config.database_url, pool_size_max or config.pool_size_max, statement_timeout_ms)
    except BaseException:
        hsm.close()
        raise
    return hsm, pool


async def serve(config: VaultConfig) -> None:
    loop = asyncio.get_running_loop()
    hsm, pool = await open_vault(config, statement_timeout_ms=config.statement_timeout_ms)
    vault = Vault(pool, hsm, config.kek_label)
    mac_keys = MacKeys(hsm)
    stats = RequestStats()
    app = VaultApp(vault, config.credential, mac_keys, stats)
    registry = registry_for(VaultCollector(stats, hsm.operations_count,
                                           lambda: (vault.keys.versions, vault.keys.active_version),
                                           vault.batch_counts))
    server: asyncio.Server | None = None
    http_server: asyncio.Server | None = None
    ops_server: asyncio.Server | None = None
    try:
        await vault.start(listen_dsn=config.database_url)
        await mac_keys.start(config.mac_keys_file)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.socket_path)
        server = await loop.create_unix_server(lambda: VaultProtocol(app), path=config.socket_path,
                                               backlog=1024)
        os.chmod(config.socket_path, 0o660)
        http_server = await start_public_api(vault, pool, stats=stats)  # POST /v1/tokens with VAULT_HTTP_PORT
        ops_server = await start_ops_server(registry)  # /metrics and /healthz when VAULT_OPS_PORT is set
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        collector.freeze_survivors()        # what start-up made lives as long as the process: never walked again
        print(f"VAULT READY socket={config.socket_path}", flush=True)
        log.info("vault listening on %s (key versions %s)", config.socket_path, vault.keys.versions)
        await stop.wait()
        log.info("shutting down")
    finally:
        if ops_server is not None:
            ops_server.close()
        if http_server is not None:
            http_server.close()
        if server is not None:
            server.close()
            connections = list(app.connections)
            await asyncio.gather(*(connection.drain() for connection in connections))
            for connection in connections:
                connection.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.socket_path)
        await vault.close()
        await pool.close()
        hsm.close()
        batches = ", ".join(f"{operation} {items} in {statements} statements"
                            for operation, (statements, items) in vault.batch_counts().items())
        log.info("vault stopped; %d audit rows written; %s; %d tokenize retries", vault.audit.rows_written,
                 batches, vault.store_retries)


def run_serve() -> int:
    import uvloop

    try:
        config = VaultConfig.from_env()
        uvloop.run(serve(config))
    except (ConfigError, HsmError) as exc:
        print(f"vault: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"vault: database unavailable: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
