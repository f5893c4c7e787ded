"""Store-and-forward: send queued capture advices and reversals until the network acknowledges them.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, so several workers share the queue and a
worker that dies mid-send only delays a row until its lease ends. The first attempt goes out as 0220
(advice) or 0400 (reversal); repeats as 0221 / 0421 with capped exponential backoff, keeping the original
STAN so the network can de-duplicate them. Any response acknowledges receipt.

Recovery runs here too: a payment still ``processing`` past its deadline (the worker died mid-flight) is
failed, answered for its idempotency key, and reversed, exactly as a timeout would have been. A refund
still ``pending`` past its deadline is failed the same way: its reservation on the payment is released,
its 0200 reversed and its idempotency key answered with the failed refund.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from switch import models, states, store
from switch.common import errors
from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint
from switch.iso import messages
from switch.network.link import NetworkError
from switch.network.router import Networks
from switch.states import Event
from switch.vault_client import VaultClient, VaultError

log = logging.getLogger(__name__)

BATCH_MAX = 100
LEASE_S = 15.0
POLL_INTERVAL_S = 1.0
BACKOFF_MAX_S = 60.0
SEND_TIMEOUT_S = 5.0
RECOVERY_GRACE_S = 2.0

# A refund's 0200 carries its own terminal id (field 41), which its reversal must repeat.
_CLAIM = """
UPDATE network_outbox o SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM payments p
WHERE o.id IN (SELECT id FROM network_outbox WHERE acknowledged_at IS NULL AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
  AND p.id = o.payment_id
RETURNING o.id, o.kind, o.network, o.original_mti, o.processing_code, o.amount, o.original_amount, o.stan, o.rrn,
          o.transmitted_at, o.attempts, p.merchant_id, p.card_token, p.currency, p.auth_code,
          COALESCE((SELECT r.terminal_id FROM refunds r WHERE r.id = o.refund_id), p.terminal_id) AS terminal_id"""

_RECOVER = """
SELECT id, merchant_id, network, amount, capture_method, stan, rrn, transmitted_at FROM payments
WHERE status = 'processing' AND deadline_at < now() - make_interval(secs => $1)
ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED"""

_RECOVER_REFUNDS = """
SELECT r.id, r.payment_id, r.merchant_id, r.amount, r.currency, r.terminal_id, r.stan, r.rrn, r.transmitted_at,
       r.idempotency_key, r.created_at, p.network
FROM refunds r JOIN payments p ON p.id = r.payment_id
WHERE r.status = 'pending' AND r.deadline_at < now() - make_interval(secs => $1)
ORDER BY r.deadline_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED"""


class OutboxSender:
    def __init__(self, pool: asyncpg.Pool, vault: VaultClient, networks: Networks, acquirer_id: str, *,
                 send_timeout_s: float = SEND_TIMEOUT_S, lease_s: float = LEASE_S,
                 poll_interval_s: float = POLL_INTERVAL_S, recovery_grace_s: float = RECOVERY_GRACE_S) -> None:
        assert lease_s > send_timeout_s, "a lease must outlast the send it covers"
        self.pool = pool
        self.vault = vault
        self.networks = networks
        self.acquirer_id = acquirer_id
        self.send_timeout_s = send_timeout_s
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.recovery_grace_s = recovery_grace_s
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.recovered_at = 0.0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def wake(self) -> None:
        """Something was queued: send it now rather than at the next poll."""
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._recover_when_due()
                while await self.send_due() == BATCH_MAX:
                    pass
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("outbox pass failed: %s", error.__class__.__name__)
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    async def _recover_when_due(self) -> None:
        """Recovery scans once per poll interval, not on every wake(): a capture or cancel wakes the sender
        to deliver its own row, which needs no scan of everything in flight."""
        now = asyncio.get_running_loop().time()
        if now - self.recovered_at >= self.poll_interval_s:
            self.recovered_at = now
            await recover_in_flight(self.pool, grace_s=self.recovery_grace_s)

    async def send_due(self) -> int:
        rows = await self.pool.fetch(_CLAIM, BATCH_MAX, self.lease_s)
        if rows:
            await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> None:
        try:
            card = await self.vault.detokenize(row["merchant_id"], row["card_token"])
            message = self._message(row, card.number.reveal(), card.expiry_yymm)
            response = await self.networks.send(row["network"], message, self.send_timeout_s)
        except (NetworkError, VaultError) as error:
            await self._retry_later(row, error.__class__.__name__)
            return
        failpoint("outbox.before_ack")
        await self.pool.execute("UPDATE network_outbox SET acknowledged_at = now(), response_code = $2 WHERE id = $1",
                                row["id"], str(response.get("39", "")))

    def _message(self, row: asyncpg.Record, pan: str, expiry_yymm: str) -> messages.Message:
        repeat = row["attempts"] > 1
        currency = lookup_currency(row["currency"])
        assert currency is not None
        common = dict(pan=pan, amount_minor=row["original_amount"], currency=currency.numeric, stan=row["stan"],
                      rrn=row["rrn"], terminal_id=row["terminal_id"], merchant_id=row["merchant_id"][-15:],
                      expiry_yymm=expiry_yymm, processing_code=row["processing_code"],
                      original_mti=row["original_mti"], original_transmitted_at=row["transmitted_at"],
                      acquirer_id=self.acquirer_id, replacement_amount_minor=row["amount"],
                      auth_code=row["auth_code"])
        if row["kind"] == "capture_advice":
            return messages.completion_advice(repeat=repeat, **common)
        return messages.reversal(repeat=repeat, **common)

    async def _retry_later(self, row: asyncpg.Record, reason: str) -> None:
        delay_s = min(BACKOFF_MAX_S, 0.5 * 2 ** min(row["attempts"], 10))
        log.info("outbox %s %s for %s not acknowledged (%s); retry in %.1fs", row["kind"], row["id"],
                 row["rrn"], reason, delay_s)
        await self.pool.execute("UPDATE network_outbox SET next_attempt_at = now() + make_interval(secs => $2) "
                                "WHERE id = $1", row["id"], delay_s)


async def recover_in_flight(pool: asyncpg.Pool, batch_max: int = BATCH_MAX,
                            grace_s: float = RECOVERY_GRACE_S) -> int:
    """Fail and reverse payments left `processing` and refunds left `pending` past their deadline (plus
    `grace_s`); answer their idempotency keys. Returns how many were recovered."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_RECOVER, grace_s, batch_max)
        for row in rows:
            await _recover_one(conn, row, reversal_of_authorization(row))
    if rows:
        log.warning("recovered %d payments left in flight past their deadline", len(rows))
    async with pool.acquire() as conn, conn.transaction():
        refunds = await conn.fetch(_RECOVER_REFUNDS, grace_s, batch_max)
        for refund in refunds:
            await _recover_refund(conn, refund)
    if refunds:
        log.warning("recovered %d refunds left pending past their deadline", len(refunds))
    return len(rows) + len(refunds)


async def _recover_one(conn: asyncpg.Connection, row: asyncpg.Record, reversal: store.OutboxItem) -> None:
    status = states.apply("processing", Event.TIMED_OUT)
    await conn.execute("UPDATE payments SET status = $2, failure_message = 'network_timeout', updated_at = now() "
                       "WHERE id = $1", row["id"], status)
    await store.add_event(conn, row["id"], Event.TIMED_OUT, "processing", status, row["amount"])
    await store.enqueue_outbox(conn, reversal)
    body = errors.network_timeout(row["id"]).body(f"req_recovery_{datetime.now(UTC):%Y%m%d%H%M%S}")
    await conn.execute("UPDATE idempotency_keys SET response_status = 504, response_body = $2, finished_at = now() "
                       "WHERE payment_id = $1 AND response_status IS NULL", row["id"], body)


async def _recover_refund(conn: asyncpg.Connection, refund: asyncpg.Record) -> None:
    """As a refund that timed out: failed (`network_timeout`), its reservation released, its 0200 reversed
    (it may have reached the network), and its idempotency key answered with the failed refund."""
    await conn.execute("UPDATE refunds SET status = 'failed', failure_code = 'network_timeout', updated_at = now() "
                       "WHERE id = $1", refund["id"])
    await store.release_refund(conn, refund["payment_id"], refund["amount"])
    await store.enqueue_outbox(conn, reversal_of_refund(refund["payment_id"], refund["network"], refund["id"],
                                                        refund["amount"], refund["stan"], refund["rrn"],
                                                        refund["transmitted_at"]))
    body = models.encoder.encode(models.refund_object({**dict(refund.items()), "status": "failed",
                                                               "failure_code": "network_timeout"}))
    await conn.execute("UPDATE idempotency_keys SET response_status = 200, response_body = $3, payment_id = $4, "
                       "finished_at = now() "
                       "WHERE merchant_id = $1 AND idempotency_key = $2 AND response_status IS NULL",
                       refund["merchant_id"], refund["idempotency_key"], body, refund["payment_id"])


def reversal_of_authorization(payment: store.NewPayment | asyncpg.Record) -> store.OutboxItem:
    """A full reversal (amount 0) of a payment's authorization or sale, keeping its STAN and RRN."""
    get = payment.__getitem__ if isinstance(payment, asyncpg.Record) else payment.__getattribute__
    original_mti = (messages.MTI_FINANCIAL_REQUEST if get("capture_method") == "automatic"
                    else messages.MTI_AUTHORIZATION_REQUEST)
    return store.OutboxItem(get("id"), "reversal", get("network"), original_mti, messages.PROCESSING_CODE_PURCHASE, 0,
                            get("amount"), get("stan"), get("rrn"), get("transmitted_at"))


def reversal_of_refund(payment_id: str, network: str, refund_id: str, amount: int, stan: str, rrn: str,
                       transmitted_at: str) -> store.OutboxItem:
    """A full reversal of a refund's 0200 (processing code 20), keeping its STAN and RRN."""
    return store.OutboxItem(payment_id, "reversal", network, messages.MTI_FINANCIAL_REQUEST,
                            messages.PROCESSING_CODE_REFUND, 0, amount, stan, rrn, transmitted_at, refund_id=refund_id)
