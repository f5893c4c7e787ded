"""Store-and-forward: send queued capture advices and reversals until the network acknowledges them.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, so several workers share the queue and a
worker that dies mid-send only delays a row until its lease ends. The first attempt goes out as 0220
(advice) or 0400 (reversal); repeats as 0221 / 0421 with capped exponential backoff, keeping the original
STAN so the network can de-duplicate them. A response acknowledges the row unless it says the message was
not acted on: the issuer or network unavailable or failing (91, 92, 96), "re-enter" (19), or, for the
first LOCATE_ATTEMPTS_MAX - 1 attempts, "unable to locate the original" (25: an original still on its way
may arrive after its reversal). Those are sent again, as a network error is.

The sender's loop also runs recovery (``recover``, given by the composition root: the payments engine's
recover operation) once per poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import Counter

from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint
from switch.common.metrics import FlushedCounts
from switch.iso import messages
from switch.network.link import NetworkError
from switch.network.router import Networks
from switch.store import outbox as outbox_store
from switch.vault_client import VaultClient
from switch.vault_protocol import VaultError

log = logging.getLogger(__name__)

BATCH_MAX = 100
LEASE_S = 15.0
POLL_INTERVAL_S = 1.0
BACKOFF_MAX_S = 60.0
SEND_TIMEOUT_S = 5.0
KINDS = ("capture_advice", "reversal")
NOT_ACTED_ON = frozenset({"19", "91", "92", "96"})
UNABLE_TO_LOCATE = "25"
LOCATE_ATTEMPTS_MAX = 5         # 25 is taken as final on the 5th attempt, about 15 s after the first

sent = Counter("switch_outbox_sent_total", "Outbox sends: acknowledged by the network, or to be retried",
               ["kind", "result"])
_sent = FlushedCounts(sent, [(kind, result) for kind in KINDS for result in ("acknowledged", "retry")])


class OutboxSender:
    def __init__(self, pool: asyncpg.Pool, vault: VaultClient, networks: Networks, acquirer_id: str,
                 recover: Callable[[], Awaitable[int]], *, send_timeout_s: float = SEND_TIMEOUT_S,
                 lease_s: float = LEASE_S, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        assert lease_s > send_timeout_s, "a lease must outlast the send it covers"
        self.pool = pool
        self.recover = recover
        self.vault = vault
        self.networks = networks
        self.acquirer_id = acquirer_id
        self.send_timeout_s = send_timeout_s
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
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
            await self.recover()

    async def send_due(self) -> int:
        """Send the rows that are due; those the network answered are acknowledged together, in one
        statement (one each cost a pooled connection and a round trip per capture)."""
        rows = await outbox_store.update_outbox_claimed(self.pool, BATCH_MAX, self.lease_s)
        if rows:
            codes = await asyncio.gather(*(self._send(row) for row in rows))
            answered = [(row, code) for row, code in zip(rows, codes, strict=True) if code is not None]
            if answered:
                failpoint("outbox.before_ack")
                await outbox_store.update_outbox_acknowledged(self.pool, [(row["id"], code) for row, code in answered])
                for row, _ in answered:
                    _sent.add((row["kind"], "acknowledged"))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> str | None:
        """The network's response code to the row's message, or None when it is to be sent again later."""
        try:
            card = await self.vault.detokenize(row["merchant_id"], row["card_token"])
            message = self._message(row, card.number.reveal(), card.expiry_yymm)
            response = await self.networks.send(row["network"], message, self.send_timeout_s)
        except (NetworkError, VaultError) as error:
            await self._retry_later(row, error.__class__.__name__)
            return None
        code = str(response.get("39", ""))
        if not acknowledges(code, row["attempts"]):
            await self._retry_later(row, f"answered {code}", code)
            return None
        return code

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

    async def _retry_later(self, row: asyncpg.Record, reason: str, code: str | None = None) -> None:
        delay_s = min(BACKOFF_MAX_S, 0.5 * 2 ** min(row["attempts"], 10))
        log.info("outbox %s %s for %s not acknowledged (%s); retry in %.1fs", row["kind"], row["id"],
                 row["rrn"], reason, delay_s)
        await outbox_store.update_outbox_retry(self.pool, row["id"], delay_s, code)
        _sent.add((row["kind"], "retry"))


def acknowledges(code: str, attempts: int) -> bool:
    """Whether a response with this field 39 ends a row sent `attempts` times (this one included)."""
    if code in NOT_ACTED_ON:
        return False
    return code != UNABLE_TO_LOCATE or attempts >= LOCATE_ATTEMPTS_MAX
