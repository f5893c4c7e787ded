"""The payment engine: authorize or sell, capture, cancel, read and list payments.

A payment is a fixed pipeline: validate -> card from the vault -> trace numbers -> write-ahead rows ->
ISO 8583 request on a pooled link within the remaining budget -> one statement recording the outcome, its
event and the merchant's response. No answer in time is not a decline: the payment fails and a reversal
is queued in the same transaction, so a late approval can never stand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from switch import models, states, store
from switch.common import errors
from switch.common.cards import CardError, CardNumber, SecretStr, validate_expiry
from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint, failpoint_soon
from switch.common.ids import new_id
from switch.declines import decline_for
from switch.iso import messages
from switch.iso.codes import ResultCode, result_for_field39
from switch.iso.messages import PROCESSING_CODE_PURCHASE
from switch.ledger import post_fee
from switch.merchants import Merchant
from switch.network.link import NetworkError
from switch.network.router import Networks
from switch.outbox import OutboxSender, reversal_of_authorization
from switch.process.config import Settings
from switch.states import Event, Status
from switch.trace import Trace, TraceAllocator
from switch.vault_client import CardData, VaultClient, VaultError


class KeyTaken(Exception):
    """The idempotency key already has a Postgres row (Redis lost it): answer from that row instead."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Call:
    """One idempotent merchant request."""

    merchant: Merchant
    idempotency_key: str
    fingerprint: bytes
    request_id: str


def decode(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    if not body.strip():
        raise errors.invalid_request("missing_body", "The request needs a JSON body.")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        raise errors.invalid_request("parameter_invalid", models.error_message(error),
                                     models.error_param(error)) from None
    except msgspec.DecodeError:
        raise errors.invalid_request("invalid_json", "The request body is not valid JSON.") from None


NUMBER_PARAM = "payment_method[card][number]"
# The field a card validation error is about (switch.common.cards and the vault use the same codes).
CARD_ERROR_PARAMS = {
    "invalid_expiry_month": "payment_method[card][exp_month]",
    "invalid_expiry_year": "payment_method[card][exp_year]",
    "expired_card": "payment_method[card][exp_year]",
    "invalid_cvc": "payment_method[card][cvc]",
}


def card_error(code: str, message: str, param: str = NUMBER_PARAM) -> errors.ApiError:
    return errors.ApiError(402, "card_error", code, message, param=param)


def vault_failure(error: VaultError) -> errors.ApiError:
    if error.code == "not_found":
        return errors.invalid_request("resource_missing", "No such payment method token.", "payment_method")
    if error.code in ("invalid_number", "incorrect_number", "unsupported_brand"):
        return card_error(error.code, "The card number is not valid.")
    if error.code in CARD_ERROR_PARAMS:
        return card_error(error.code, "The card's expiry date or security code is not valid.",
                          CARD_ERROR_PARAMS[error.code])
    return errors.service_unavailable("vault_unavailable", "The card vault is unavailable; retry the request.")


class PaymentEngine:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, vault: VaultClient, networks: Networks,
                 traces: TraceAllocator, outbox: OutboxSender) -> None:
        self.settings = settings
        self.pool = pool
        self.vault = vault
        self.networks = networks
        self.traces = traces
        self.outbox = outbox
        self.writer = store.PaymentWriter(pool)

    # ----- create -------------------------------------------------------------------------------------

    async def create(self, call: Call, body: bytes) -> Reply:
        started = time.monotonic()
        failpoint("payment.after_lock")
        request: models.PaymentCreate = decode(models.payment_create_decoder, body)
        currency = lookup_currency(request.currency)
        if currency is None:
            raise errors.invalid_request("currency_invalid", "The currency is not a supported ISO 4217 code.",
                                         "currency")
        card, token = await self._card_for(call.merchant, request.payment_method)
        network = self.networks.route(card.brand)
        trace = await self.traces.next()
        new = self._new_payment(call, request, card, token, network, trace)
        if not await self.writer.begin(new, call.idempotency_key, call.fingerprint):
            raise KeyTaken
        failpoint("payment.after_write_ahead")
        sale = request.capture_method == "automatic"
        message = self._request_message(sale, new, card, trace, currency.numeric)
        budget_s = self.settings.payment_budget_s - (time.monotonic() - started)
        failpoint_soon("payment.after_send")
        try:
            response = await self.networks.send(network, message, min(budget_s, self.settings.network_timeout_s))
        except NetworkError as error:
            return await self._not_answered(call, new, error)
        failpoint("payment.after_answer")
        return await self._record_answer(call, new, sale, response)

    async def _card_for(self, merchant: Merchant, method: str | models.CardMethod) -> tuple[CardData, str]:
        """The card for the network step, and its vault token. Raw card data is tokenized at once."""
        try:
            if isinstance(method, str):
                card = await self.vault.detokenize(merchant.id, method)
                return card, method
            raw = method.card
            number = CardNumber(raw.number)
            cvc = SecretStr(raw.cvc) if raw.cvc else None
            validate_expiry(raw.exp_month, raw.exp_year)
            info = await self.vault.tokenize(merchant.id, number, raw.exp_month, raw.exp_year, None)
        except CardError as error:
            raise card_error(error.code, error.message, CARD_ERROR_PARAMS.get(error.code, NUMBER_PARAM)) from None
        except VaultError as error:
            raise vault_failure(error) from None
        card = CardData(number=number, exp_month=raw.exp_month, exp_year=raw.exp_year, brand=info.brand,
                        last4=info.last4, cvc=cvc)
        return card, info.token

    def _new_payment(self, call: Call, request: models.PaymentCreate, card: CardData, token: str, network: str,
                     trace: Trace) -> store.NewPayment:
        now = datetime.now(UTC)
        return store.NewPayment(
            id=new_id("pay"), merchant_id=call.merchant.id, amount=request.amount, currency=request.currency,
            capture_method=request.capture_method, card_token=token, card_brand=card.brand,
            card_last4=card.last4, card_exp_month=card.exp_month, card_exp_year=card.exp_year, network=network,
            terminal_id=trace.terminal_id, stan=trace.stan, rrn=trace.rrn,
            description=request.description, statement_descriptor=request.statement_descriptor,
            metadata=request.metadata or {}, created_at=now,
            transmitted_at=messages.transmission_datetime(now),
            deadline_at=now + timedelta(seconds=self.settings.payment_budget_s),
        )

    def _request_message(self, sale: bool, new: store.NewPayment, card: CardData, trace: Trace,
                         currency_numeric: str) -> messages.Message:
        build = messages.financial_request if sale else messages.authorization_request
        return build(pan=card.number.reveal(), amount_minor=new.amount, currency=currency_numeric, stan=trace.stan,
                     rrn=trace.rrn, terminal_id=trace.terminal_id, merchant_id=new.merchant_id[-15:],
                     expiry_yymm=card.expiry_yymm,
                     cvv=card.cvc.reveal() if card.cvc else None, processing_code=PROCESSING_CODE_PURCHASE,
                     now=new.created_at)

    async def _record_answer(self, call: Call, new: store.NewPayment, sale: bool,
                             response: messages.Message) -> Reply:
        response_code = str(response.get("39", ""))
        result = result_for_field39(response_code)
        if result == ResultCode.APPROVED:   # partial approvals are not accepted: they decline
            event = Event.SALE_APPROVED if sale else Event.AUTHORIZED
            outcome = store.Outcome(
                status=states.apply(Status.PROCESSING, event), amount_capturable=0 if sale else new.amount,
                amount_received=new.amount if sale else 0, auth_code=str(response.get("38", "")).strip() or None,
                response_code=response_code, decline_code=None, failure_message=None, event_type=event)
            reply = Reply(200, models.encoder.encode(store.payment_object(_row(new, outcome))))
        else:
            decline = decline_for(result)
            outcome = store.Outcome(
                status=states.apply(Status.PROCESSING, Event.DECLINED), amount_capturable=0, amount_received=0,
                auth_code=None, response_code=response_code, decline_code=decline.decline_code,
                failure_message=decline.message, event_type=Event.DECLINED)
            error = errors.ApiError(402, "card_error", decline.code, decline.message,
                                    decline_code=decline.decline_code, payment_id=new.id)
            reply = Reply(402, error.body(call.request_id))
        if not await self.writer.finish(store.Finish(new.id, outcome, call.idempotency_key, reply.status,
                                                     reply.body)):
            # Recovery already failed and reversed this payment (we outlived its deadline); its answer stands.
            return await self._stored_reply(call)
        return reply

    async def _not_answered(self, call: Call, new: store.NewPayment, error: NetworkError) -> Reply:
        """Never sent (retryable) -> failed; maybe sent (timeout, disconnect) -> failed and reversed."""
        sent = not error.retryable
        if sent:
            api_error = errors.network_timeout(new.id)
            event, code = Event.TIMED_OUT, "network_timeout"
        else:
            api_error = errors.ApiError(
                503, "api_error", "network_unavailable",
                "No link to the card network could take the payment; it was not sent. Create a new payment "
                "(new Idempotency-Key) to try again.", payment_id=new.id)
            event, code = Event.NETWORK_UNAVAILABLE, "network_unavailable"
        reply = Reply(api_error.status, api_error.body(call.request_id))
        outcome = store.Outcome(status=states.apply(Status.PROCESSING, event), amount_capturable=0,
                                amount_received=0, auth_code=None, response_code=None, decline_code=None,
                                failure_message=code, event_type=event)
        async with self.pool.acquire() as conn, conn.transaction():
            finished = await store.finish_payment(conn, new.id, outcome, call.idempotency_key, reply.status,
                                                  reply.body)
            if finished and sent:
                await store.enqueue_outbox(conn, reversal_of_authorization(new))
        if not finished:
            return await self._stored_reply(call)
        if sent:
            self.outbox.wake()
        return reply

    async def _stored_reply(self, call: Call, conn: asyncpg.Connection | asyncpg.Pool | None = None) -> Reply:
        """The answer already stored for this request's idempotency key (another path finished it)."""
        row = await store.load_key(conn or self.pool, call.merchant.id, call.idempotency_key)
        assert row is not None and row.response_status is not None and row.response_body is not None
        return Reply(row.response_status, row.response_body)

    # ----- capture and cancel -------------------------------------------------------------------------

    async def capture(self, call: Call, payment_id: str, body: bytes) -> Reply:
        request: models.CaptureRequest = decode(models.capture_decoder, body or b"{}")
        path = f"/v1/payments/{payment_id}/capture"
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._lock(conn, call, path, payment_id)
            next_status = states.apply(row["status"], Event.CAPTURED)
            amount = request.amount_to_capture or row["amount_capturable"]
            if amount > row["amount_capturable"]:
                raise errors.invalid_request("amount_too_large", "The amount to capture is larger than the amount "
                                             "capturable.", "amount_to_capture")
            updated = await conn.fetchrow(
                f"UPDATE payments SET status = $2, amount_capturable = 0, amount_received = $3, updated_at = now() "
                f"WHERE id = $1 RETURNING {store.PAYMENT_COLUMNS}", payment_id, next_status, amount)
            await store.add_event(conn, payment_id, Event.CAPTURED, row["status"], next_status, amount)
            await store.enqueue_outbox(conn, store.OutboxItem(
                payment_id, "capture_advice", row["network"], messages.MTI_AUTHORIZATION_REQUEST,
                PROCESSING_CODE_PURCHASE, amount, row["amount"], row["stan"], row["rrn"], row["transmitted_at"]))
            await post_capture(conn, updated)
            reply = Reply(200, models.encoder.encode(store.payment_object(updated)))
            await store.finish_key(conn, call.merchant.id, call.idempotency_key, reply.status, reply.body, payment_id)
        failpoint("capture.after_commit")
        self.outbox.wake()
        return reply

    async def cancel(self, call: Call, payment_id: str, body: bytes) -> Reply:
        decode(models.cancel_decoder, body or b"{}")
        path = f"/v1/payments/{payment_id}/cancel"
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._lock(conn, call, path, payment_id)
            next_status = states.apply(row["status"], Event.CANCELED)
            updated = await conn.fetchrow(
                f"UPDATE payments SET status = $2, amount_capturable = 0, updated_at = now() "
                f"WHERE id = $1 RETURNING {store.PAYMENT_COLUMNS}", payment_id, next_status)
            await store.add_event(conn, payment_id, Event.CANCELED, row["status"], next_status, row["amount"])
            await store.enqueue_outbox(conn, reversal_of_authorization(row))
            reply = Reply(200, models.encoder.encode(store.payment_object(updated)))
            await store.finish_key(conn, call.merchant.id, call.idempotency_key, reply.status, reply.body, payment_id)
        failpoint("cancel.after_commit")
        self.outbox.wake()
        return reply

    async def _lock(self, conn: asyncpg.Connection, call: Call, path: str, payment_id: str) -> asyncpg.Record:
        """Claim the idempotency key and lock the payment row, inside the caller's transaction."""
        if not await store.claim_key(conn, call.merchant.id, call.idempotency_key, "POST", path, call.fingerprint):
            raise KeyTaken
        row = await store.get_payment(conn, call.merchant.id, payment_id, for_update=True)
        if row is None:
            raise errors.not_found("payment", payment_id)
        return row

    # ----- read ---------------------------------------------------------------------------------------

    async def get(self, merchant: Merchant, payment_id: str) -> bytes:
        row = await store.get_payment(self.pool, merchant.id, payment_id)
        if row is None:
            raise errors.not_found("payment", payment_id)
        return models.encoder.encode(store.payment_object(row))

    async def list(self, merchant: Merchant, query: dict[str, str]) -> bytes:
        limit = _int_param(query, "limit", 10, 1, 100)
        created_gte = _time_param(query, "created[gte]")
        created_lte = _time_param(query, "created[lte]")
        rows, has_more = await store.list_payments(self.pool, merchant.id, limit, query.get("starting_after"),
                                                   query.get("ending_before"), created_gte, created_lte)
        return models.encoder.encode(models.PaymentList(data=[store.payment_object(r) for r in rows],
                                                        has_more=has_more))


async def post_capture(conn: asyncpg.Connection, payment: asyncpg.Record) -> None:
    """Captured funds: the network owes them to us, and we owe them to the merchant."""
    amount = payment["amount_received"]
    await store.post_ledger(conn, f"capture:{payment['id']}", payment["id"], payment["currency"], [
        (f"network:{payment['network']}:receivable", amount),
        (f"merchant:{payment['merchant_id']}:payable", -amount),
    ])
    await post_fee(conn, payment)


def _row(new: store.NewPayment, outcome: store.Outcome) -> dict[str, object]:
    """The payment as it is after `outcome`, built in memory so the reply needs no extra read."""
    return {
        "id": new.id, "status": outcome.status, "amount": new.amount, "currency": new.currency,
        "capture_method": new.capture_method, "amount_capturable": outcome.amount_capturable,
        "amount_received": outcome.amount_received, "amount_refunded": 0, "card_token": new.card_token,
        "card_brand": new.card_brand, "card_last4": new.card_last4, "card_exp_month": new.card_exp_month,
        "card_exp_year": new.card_exp_year, "network": new.network, "auth_code": outcome.auth_code,
        "response_code": outcome.response_code, "decline_code": outcome.decline_code,
        "failure_message": outcome.failure_message, "description": new.description,
        "statement_descriptor": new.statement_descriptor, "metadata": new.metadata, "created_at": new.created_at,
    }


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise errors.invalid_request("parameter_invalid", f"{name} must be an integer from {low} to {high}.", name)
    return int(text)


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 12:
        raise errors.invalid_request("parameter_invalid", f"{name} must be a Unix timestamp.", name)
    return datetime.fromtimestamp(int(text), UTC)
