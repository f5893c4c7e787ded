"""Refunds: one or more partial refunds of a captured payment, each an online 0200 (processing code 20).

The refund amount is reserved on the payment (``amount_refunded``) under the payment's row lock before the
network is asked, so concurrent refunds can never exceed what was captured. A decline releases the
reservation; no answer in time releases it too and queues a reversal of the refund's 0200.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from switch import models, store
from switch.common import errors
from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint, failpoint_soon
from switch.common.ids import new_id
from switch.iso import messages
from switch.iso.codes import ResultCode, result_for_field39
from switch.iso.messages import PROCESSING_CODE_REFUND
from switch.network.link import NetworkError
from switch.outbox import reversal_of_refund
from switch.payments import Call, KeyTaken, PaymentEngine, Reply, decode, vault_failure
from switch.states import Event, Status, apply
from switch.trace import Trace
from switch.vault_client import VaultError

REFUND_COLUMNS = "id, payment_id, merchant_id, amount, currency, status, failure_code, created_at"


class RefundEngine:
    def __init__(self, payments: PaymentEngine) -> None:
        self.payments = payments
        self.pool = payments.pool

    async def create(self, call: Call, body: bytes) -> Reply:
        started = time.monotonic()
        request: models.RefundCreate = decode(models.refund_create_decoder, body)
        trace = await self.payments.traces.next()
        now = datetime.now(UTC)
        transmitted_at = messages.transmission_datetime(now)
        settings = self.payments.settings
        async with self.pool.acquire() as conn, conn.transaction():
            payment, amount = await self._reserve(conn, call, request)
            refund_id = await self._insert(conn, call, payment, amount, trace, transmitted_at,
                                           now + timedelta(seconds=settings.payment_budget_s))
        failpoint("refund.after_reserve")
        try:
            card = await self.payments.vault.detokenize(call.merchant.id, payment["card_token"])
        except VaultError as error:
            return await self._finish(call, payment, refund_id, amount, "failed", "vault_unavailable", None,
                                      vault_failure(error))
        currency = lookup_currency(payment["currency"])
        assert currency is not None
        message = messages.financial_request(
            pan=card.number.reveal(), amount_minor=amount, currency=currency.numeric, stan=trace.stan,
            rrn=trace.rrn, terminal_id=trace.terminal_id, merchant_id=call.merchant.id[-15:],
            expiry_yymm=card.expiry_yymm, processing_code=PROCESSING_CODE_REFUND,
            now=now)
        budget_s = min(settings.payment_budget_s - (time.monotonic() - started), settings.network_timeout_s)
        failpoint_soon("refund.after_send")
        try:
            response = await self.payments.networks.send(payment["network"], message, budget_s)
        except NetworkError as error:
            reversal = reversal_of_refund(payment["id"], payment["network"], refund_id, amount, trace.stan, trace.rrn,
                                          transmitted_at) if not error.retryable else None
            return await self._not_answered(call, payment, refund_id, amount, reversal)
        failpoint("refund.after_answer")
        code = str(response.get("39", ""))
        if result_for_field39(code) == ResultCode.APPROVED:
            return await self._finish(call, payment, refund_id, amount, "succeeded", None, code, None)
        return await self._finish(call, payment, refund_id, amount, "failed", "declined", code, None)

    async def _reserve(self, conn: asyncpg.Connection, call: Call,
                       request: models.RefundCreate) -> tuple[asyncpg.Record, int]:
        if not await store.claim_key(conn, call.merchant.id, call.idempotency_key, "POST", "/v1/refunds",
                                     call.fingerprint):
            raise KeyTaken
        payment = await store.get_payment(conn, call.merchant.id, request.payment, for_update=True)
        if payment is None:
            raise errors.not_found("payment", request.payment, "payment")
        apply(payment["status"], Event.REFUND_REQUESTED)
        refundable = payment["amount_received"] - payment["amount_refunded"]
        amount = request.amount or refundable
        if refundable <= 0:
            raise errors.invalid_request("charge_already_refunded", "This payment has already been fully refunded.",
                                         "payment")
        if amount > refundable:
            raise errors.invalid_request("amount_too_large", f"The refund amount is larger than the {refundable} "
                                         "that remains refundable.", "amount")
        await conn.execute("UPDATE payments SET amount_refunded = amount_refunded + $2, updated_at = now() "
                           "WHERE id = $1", payment["id"], amount)
        await store.add_event(conn, payment["id"], Event.REFUND_REQUESTED, Status.SUCCEEDED, Status.SUCCEEDED,
                              amount)
        return payment, amount

    @staticmethod
    async def _insert(conn: asyncpg.Connection, call: Call, payment: asyncpg.Record, amount: int, trace: Trace,
                      transmitted_at: str, deadline_at: datetime) -> str:
        """The pending refund, with its trace numbers, its deadline (after which recovery fails and
        reverses it) and its idempotency key (which recovery answers)."""
        refund_id = new_id("re")
        await conn.execute(
            "INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, terminal_id, stan, rrn, "
            "transmitted_at, deadline_at, idempotency_key) "
            "VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11)", refund_id, payment["id"],
            call.merchant.id, amount, payment["currency"], trace.terminal_id, trace.stan, trace.rrn, transmitted_at,
            deadline_at, call.idempotency_key)
        return refund_id

    async def _not_answered(self, call: Call, payment: asyncpg.Record, refund_id: str, amount: int,
                            reversal: store.OutboxItem | None) -> Reply:
        """No answer: a refund that may have reached the network (`reversal` given) is reversed; one that was
        never sent simply fails."""
        reply = await self._finish(call, payment, refund_id, amount, "failed",
                                   "network_timeout" if reversal else "network_unavailable", None, None, reversal)
        if reversal:
            self.payments.outbox.wake()
        return reply

    async def _finish(self, call: Call, payment: asyncpg.Record, refund_id: str, amount: int, status: str,
                      failure_code: str | None, response_code: str | None, error: errors.ApiError | None,
                      reversal: store.OutboxItem | None = None) -> Reply:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE refunds SET status = $2, failure_code = $3, response_code = $4, updated_at = now() "
                f"WHERE id = $1 AND status = 'pending' RETURNING {REFUND_COLUMNS}", refund_id, status, failure_code,
                response_code)
            if row is None:
                # Recovery already failed and reversed this refund (we outlived its deadline); its answer stands.
                return await self.payments._stored_reply(call, conn)
            if status == "succeeded":
                await store.add_event(conn, payment["id"], Event.REFUND_SUCCEEDED, Status.SUCCEEDED, Status.SUCCEEDED,
                                      amount, response_code)
                await post_refund(conn, payment, refund_id, amount)
            else:
                await store.release_refund(conn, payment["id"], amount, response_code)
            if reversal is not None:
                await store.enqueue_outbox(conn, reversal)
            reply = (Reply(error.status, error.body(call.request_id)) if error
                     else Reply(200, models.encoder.encode(models.refund_object(row))))
            await store.finish_key(conn, call.merchant.id, call.idempotency_key, reply.status, reply.body,
                                   payment["id"])
        return reply

    async def get(self, merchant_id: str, refund_id: str) -> bytes:
        row = await self.pool.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2",
                                       refund_id, merchant_id)
        if row is None:
            raise errors.not_found("refund", refund_id)
        return msgspec.json.encode(models.refund_object(row))


async def post_refund(conn: asyncpg.Connection, payment: asyncpg.Record, refund_id: str, amount: int) -> None:
    """The merchant owes the refund back; the network pays it out to the card."""
    await store.post_ledger(conn, f"refund:{refund_id}", payment["id"], payment["currency"], [
        (f"merchant:{payment['merchant_id']}:payable", amount),
        (f"network:{payment['network']}:receivable", -amount),
    ])
