"""Gauges of what waits, sampled from Postgres: the network outbox (capture advices and reversals not yet
acknowledged, and the age of the oldest), webhook deliveries pending and the delivery lag, open settlement
exceptions; and how far the worker's clock is from the database's (a payment's deadline is the worker's
time, and recovery compares it with the database's). Every worker samples every SAMPLE_INTERVAL_S; the
gauges aggregate as the largest value of the live workers (the supervisor drops a dead worker's), so the
exposition shows one figure whichever worker answers the scrape."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from prometheus_client import Gauge

from switch.store.backlog import select_backlog

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0
SAMPLE_TIMEOUT_S = 2.0
OUTBOX_KINDS = ("capture_advice", "reversal")

outbox_pending = Gauge("switch_outbox_pending", "Network outbox rows not yet acknowledged", ["kind"],
                       multiprocess_mode="livemax")
outbox_oldest_age = Gauge("switch_outbox_oldest_age_seconds", "Age of the oldest unacknowledged outbox row",
                          ["kind"], multiprocess_mode="livemax")
webhook_pending = Gauge("switch_webhook_deliveries_pending", "Webhook deliveries not yet delivered or given up",
                        multiprocess_mode="livemax")
webhook_lag = Gauge("switch_webhook_delivery_lag_seconds",
                    "How long the oldest due webhook delivery (queued, or an event past a cursor) has waited",
                    multiprocess_mode="livemax")
settlement_exceptions_open = Gauge("switch_settlement_exceptions_open",
                                   "Settlement lines of active files that did not match and no operator resolved",
                                   multiprocess_mode="livemax")


clock_offset = Gauge("switch_clock_offset_seconds", "How far this worker's clock is from the database's (either way)",
                     multiprocess_mode="livemax")


def offset_s(database_time: float, sent_at: float, answered_at: float) -> float:
    """The database's clock read against the worker's at the middle of the round trip, as NTP reads it."""
    return abs(database_time - (sent_at + answered_at) / 2)


def publish(row: asyncpg.Record | dict) -> None:
    """Set every gauge from one sample; a kind with nothing waiting reads 0, so no series goes missing."""
    outbox = row["outbox"] or {}
    for kind in OUTBOX_KINDS:
        pending, oldest_s = outbox.get(kind, (0, 0.0))
        outbox_pending.labels(kind).set(pending)
        outbox_oldest_age.labels(kind).set(oldest_s)
    webhook_pending.set(row["webhook_pending"])
    webhook_lag.set(row["webhook_lag_s"])
    settlement_exceptions_open.set(row["settlement_exceptions_open"])


async def sample_forever(pool: asyncpg.Pool, interval_s: float = SAMPLE_INTERVAL_S) -> None:
    while True:
        try:
            sent_at = time.time()
            row = await asyncio.wait_for(select_backlog(pool), SAMPLE_TIMEOUT_S)
            clock_offset.set(offset_s(row["database_time"], sent_at, time.time()))
            publish(row)
        except Exception as error:  # noqa: BLE001 - the loop must outlive any one failed sample
            # The gauges keep their last values; a stale sample is better than none, and the
            # database's own alerts say why it is away.
            log.warning("backlog sample failed: %s", error.__class__.__name__)
        await asyncio.sleep(interval_s)
