"""A switch worker: one uvloop event loop serving the merchant API on the shared port (SO_REUSEPORT), with
its own Postgres pool, Redis client, vault connections and network links. ``Worker.run`` is the one
composition root: every part of the switch is built and wired here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis
import uvloop
from redis.exceptions import RedisError

from switch.common import collector, http, metrics
from switch.common.drain import Drain
from switch.common.pg_settings import KEYED_ONLY
from switch.common.tls import server_context
from switch.fraud.screen import Screener
from switch.frontends.http.app import App
from switch.frontends.http.balance_api import BalanceApi
from switch.frontends.http.events_api import EventsApi
from switch.frontends.http.fraud_api import FraudApi
from switch.frontends.http.ops import OpsApp
from switch.frontends.http.webhooks_api import WebhooksApi
from switch.frontends.stripe.api import StripeApi
from switch.frontends.tcp import server as tcp
from switch.frontends.webhooks.cursors import cursor_owner
from switch.frontends.webhooks.delivery import RETRY_SCHEDULE_S, Deliverer
from switch.idempotency.lock import Idempotency
from switch.idempotency.pipeline import RedisPipeliner
from switch.idempotency.ratelimit import RateLimiter
from switch.iso.messages import mask_pan
from switch.merchants import ApiKeyCache
from switch.network.router import Networks
from switch.outbox.sender import OutboxSender
from switch.payments.changes import Changes
from switch.payments.context import Budgets, Services
from switch.payments.engine import Payments
from switch.payments.locked import LockedBatches
from switch.payments.trace import TraceAllocator
from switch.process import backlog
from switch.process.config import Settings, load_settings
from switch.settlement import job as settlement_job
from switch.settlement import payouts
from switch.store import events as event_store
from switch.store import idempotency as key_store
from switch.store.pool import create_pool
from switch.store.writer import PaymentWriter
from switch.vault_client import VaultClient

log = logging.getLogger("switch")

REAPER_INTERVAL_S = 300.0
# A stopping worker waits for its running requests up to the payment budget and this: their last writes
# come after the budget's end (a timed-out payment's failure and reversal).
DRAIN_MARGIN_S = 1.0


def configure_logging(tag: str) -> None:
    logging.basicConfig(level=os.environ.get("SWITCH_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format=f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s")


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
    ops_host: str
    ops_port: int
    index: int = 0

    async def run(self, ready_fd: int | None) -> None:
        settings = self.settings
        pool = await create_pool(settings.database_url, settings.database_pool_size_max)
        # No socket_timeout: redis-py would then start a task per send and a timer per reply read. The
        # pipeliner bounds each whole round trip instead (switch.idempotency.pipeline.REDIS_TIMEOUT_S).
        redis_client = redis.Redis.from_url(settings.redis_url, max_connections=256, socket_timeout=None,
                                            socket_connect_timeout=2.0)
        vault = VaultClient(settings.vault_socket, settings.vault_credential)
        await vault.connect()
        # MAC session keys come from the vault, derived in its HSM, once per link sign-on.
        networks = Networks(settings.networks, on_late_response, mac_key_source=vault.mac_key)
        await networks.start()
        writer = PaymentWriter(pool)
        await writer.start()
        idempotency = Idempotency(redis_client, pool, settings.request_hmac_key, settings.idempotency_lock_ttl_s,
                                  settings.idempotency_retention_s,
                                  lock_stale_after_s=settings.payment_budget_s + settings.recovery_grace_s)
        # The outbox loop runs the engine's recovery; the engine wakes the outbox when it queues a row.
        # The outbox sender's own pool: its statements read a table that only grows, by key (KEYED_ONLY).
        outbox_pool = await create_pool(settings.database_url, 2, server_settings=KEYED_ONLY)
        # The group-committed captures' and refunds' reservations' own pool, one session a batch in flight:
        # their statements find payments and keys by the batch's ids (LockedBatches.SESSION).
        locked_pool = await create_pool(settings.database_url, LockedBatches.INFLIGHT_MAX,
                                        server_settings=LockedBatches.SESSION)
        outbox = OutboxSender(outbox_pool, vault, networks, settings.acquirer_id, lambda: payments.recover(),
                              send_timeout_s=settings.outbox_send_timeout_s, lease_s=settings.outbox_lease_s,
                              poll_interval_s=settings.outbox_poll_interval_s)
        # The counters ride the idempotency pipeline, or go to a Redis of their own (one that may evict,
        # and whose loss only makes the screen fail open or closed, never the payment fail).
        fraud_redis = (redis.Redis.from_url(settings.fraud_redis_url, socket_timeout=None, socket_connect_timeout=2.0)
                       if settings.fraud_redis_url else None)
        fraud_commands = RedisPipeliner(fraud_redis) if fraud_redis is not None else idempotency.commands
        screener = Screener(pool, fraud_commands, settings.request_hmac_key, settings.fraud_budget_s,
                            rides_lock=fraud_redis is None)
        services = Services(Budgets(settings.payment_budget_s, settings.network_timeout_s), pool, writer, vault,
                            networks, TraceAllocator(pool), idempotency, outbox.wake, screener,
                            Changes(locked_pool))
        payments = Payments(services, recovery_grace_s=settings.recovery_grace_s)
        limiter = RateLimiter(idempotency.commands, settings.rate_limits, settings.request_hmac_key)
        for commands in {idempotency.commands, fraud_commands}:
            with contextlib.suppress(RedisError, OSError):  # Redis away now: loaded on first use instead
                await commands.load_scripts()
        webhooks = WebhooksApi(pool, settings.webhooks_allow_loopback)
        app = App(payments, ApiKeyCache(pool), idempotency.fingerprint, limiter, FraudApi(pool, screener),
                  BalanceApi(pool), EventsApi(pool), webhooks, StripeApi(payments, idempotency.fingerprint, pool,
                                                                         webhooks))
        tls = server_context(settings.tls_cert_file, settings.tls_key_file) if settings.tls_cert_file else None
        drain = Drain()
        server = await http.serve(app.handle, self.host, self.port, tls=tls, drain=drain)
        tcp_server = await tcp.serve(tcp.Operations(payments, app.api_keys, idempotency.fingerprint, limiter),
                                     self.host, settings.tcp_port, tls=tls, drain=drain) if settings.tcp_port else None
        ops_server = await http.serve(OpsApp(pool, redis_client, vault, networks, drain).handle, self.ops_host,
                                      self.ops_port)
        outbox.start()
        reaper = asyncio.get_running_loop().create_task(self._reap(pool))
        settling = (asyncio.get_running_loop().create_task(settlement_job.run(
            pool, Path(settings.settlement_dir), Path(settings.settlement_reports_dir), list(settings.networks),
            settings.settlement_poll_s, settings.settlement_missing_after_days)) if settings.settlement_dir else None)
        deliverer = Deliverer(pool, settings.webhooks_allow_loopback,
                              settings.webhook_retry_schedule_s or RETRY_SCHEDULE_S,
                              owner=cursor_owner(self.port, self.index))
        delivering = asyncio.get_running_loop().create_task(deliverer.run())
        sampling = asyncio.get_running_loop().create_task(backlog.sample_forever(pool))
        paying = (asyncio.get_running_loop().create_task(payouts.run(
            pool, Path(settings.payouts_dir), settings.payouts_poll_s)) if settings.payouts_dir else None)
        # Everything made so far (modules, settings, pools, caches) lives as long as the worker: frozen, the
        # collector no longer walks it on every full pass.
        collector.freeze_survivors()
        if ready_fd is not None:
            try:
                os.write(ready_fd, b"ready\n")
            except OSError:
                pass                        # a restarted worker: nobody waits for its readiness
            os.close(ready_fd)
        await self._until_stopped()
        server.close()
        if tcp_server is not None:
            tcp_server.close()
        # What the merchant ports took on is finished (its network answers, its final writes) before
        # anything it needs closes; the ops port stays up meanwhile for the health checks.
        if left := await drain.stop(settings.payment_budget_s + DRAIN_MARGIN_S):
            log.warning("stopping with %d requests (an HTTP connection's queue counts once) still running after "
                        "the drain", left)
        ops_server.close()
        reaper.cancel()
        await deliverer.close()
        for job in (settling, paying, delivering, sampling):
            if job is not None:
                job.cancel()
        await outbox.stop()
        await asyncio.sleep(0.2)            # let handlers already running write their final rows
        await writer.close()
        idempotency.commands.log_batches()
        await networks.close()
        metrics.flush_all()                 # after the links' sign-offs, which are counted too
        await vault.close()
        await idempotency.commands.close()
        await redis_client.aclose()
        if fraud_redis is not None:
            await fraud_commands.close()
            await fraud_redis.aclose()
        await outbox_pool.close()
        await locked_pool.close()
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
                await key_store.delete_expired_keys(pool, self.settings.idempotency_retention_s)  # type: ignore[arg-type]
                await event_store.prune(pool)  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001 - a failed pass is retried next interval
                log.warning("idempotency and event reaper failed: %s", error.__class__.__name__)


def run_worker(host: str, port: int, index: int, ops_host: str, ops_port: int) -> int:
    configure_logging(f"worker-{index}")
    ready_fd = int(os.environ["SWITCH_READY_FD"]) if os.environ.get("SWITCH_READY_FD") else None
    uvloop.install()
    # A payment allocates a few hundred short-lived objects; at the default threshold (700) the young
    # generation is collected several times per batch of payments, and the fraud step's objects alone cost
    # about 7 µs a payment in collections. 7,000 keeps young collections rare and each one short.
    gc.set_threshold(collector.YOUNG_THRESHOLD, 10, 10)
    asyncio.run(Worker(load_settings(), host, port, ops_host, ops_port, index).run(ready_fd))
    return 0
