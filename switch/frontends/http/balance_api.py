"""The merchant API's money endpoints: the balance, its transactions, and payouts (docs/settlement.md).

    GET  /v1/balance                     {"available": [{"amount", "currency"}], "pending": [...]}
    GET  /v1/balance_transactions        the ledger entries of the merchant's balance, newest first
                                         (limit, starting_after=txn_...)
    POST /v1/payouts                     {"amount", "currency"} under an Idempotency-Key; never more than
                                         the available balance (402 balance_insufficient)
    GET  /v1/payouts, /v1/payouts/{id}   (limit, status)
"""

from __future__ import annotations

import re
from typing import Literal

import asyncpg
import msgspec
from msgspec import Struct

from switch.common import currency as currencies
from switch.common import errors
from switch.common.http import Response
from switch.frontends.http import render, schema
from switch.ledger import postings
from switch.merchants import Merchant
from switch.payments.commands import Amount, CurrencyCode
from switch.settlement import payouts
from switch.settlement.payouts import PayoutRefused
from switch.store import payouts as payout_store

_PAYOUT = re.compile(r"^/v1/payouts/(po_[0-9A-Za-z]{10,40})$")
_TRANSACTION_ID = re.compile(r"^txn_([0-9]{1,19})\Z")
BIGINT_MAX = 2**63 - 1          # ledger entry ids are bigint: a larger cursor would fail in Postgres, a 500
PAYOUT_STATUSES = ("pending", "in_transit", "paid", "failed")

# A posting's kind (its id's prefix) as a balance transaction's type.
_TYPES = {"capture": "charge", "fee": "fee", "refund": "refund", "settle": "settlement", "release": "settlement",
          "unsettle": "settlement_superseded", "unrelease": "settlement_superseded", "payout": "payout",
          "payout_failed": "payout_failure"}


class PayoutBody(Struct, forbid_unknown_fields=True):
    amount: Amount
    currency: CurrencyCode


class Money(Struct):
    amount: int
    currency: str


class BalanceObject(Struct):
    available: list[Money]
    pending: list[Money]
    object: str = "balance"
    livemode: bool = False


class BalanceTransaction(Struct):
    id: str
    type: str
    amount: int                     # positive: the merchant's balance grew
    currency: str
    balance: Literal["pending", "available"]
    source: str | None
    created: int
    object: str = "balance_transaction"


class PayoutObject(Struct):
    id: str
    amount: int
    currency: str
    status: str
    automatic: bool
    scheduled_for: str | None
    failure_code: str | None
    created: int
    updated: int
    object: str = "payout"


_payout_decoder = msgspec.json.Decoder(PayoutBody)
_encoder = msgspec.json.Encoder()


def payout_object(row: asyncpg.Record) -> PayoutObject:
    return msgspec.convert(payouts.public_fields(row), PayoutObject)


def _source(posting_id: str) -> str:
    """What a posting of no payment came from: a payout (po_...) or a settlement file (settlement_file_<id>)."""
    kind, rest = posting_id.split(":", 1)
    return f"settlement_file_{rest.split(':', 1)[0]}" if kind in ("release", "unrelease") else rest


class BalanceApi:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, merchant: Merchant, path: str, query: str) -> tuple[str, Response] | None:
        if path == "/v1/balance":
            found = await payouts.balance(self.pool, merchant.id)
            body = BalanceObject([Money(amount, cur) for cur, amount in sorted(found.available.items())],
                                 [Money(amount, cur) for cur, amount in sorted(found.pending.items())])
            return "balance.get", Response(200, _encoder.encode(body))
        if path == "/v1/balance_transactions":
            return "balance_transactions.list", Response(200, await self._transactions(merchant, query))
        if path == "/v1/payouts":
            return "payouts.list", Response(200, await self._payouts(merchant, query))
        if match := _PAYOUT.match(path):
            row = await payout_store.get_payout(self.pool, merchant.id, match.group(1))
            if row is None:
                raise errors.invalid_request("resource_missing", f"No such payout: '{match.group(1)}'.", "id",
                                             status=404)
            return "payouts.get", Response(200, _encoder.encode(payout_object(row)))
        return None

    async def create_payout(self, merchant: Merchant, body: bytes, key: str, fingerprint: bytes) -> Response:
        request: PayoutBody = schema.decode(_payout_decoder, body)
        if currencies.lookup(request.currency) is None:
            raise errors.invalid_request("parameter_invalid", f"Unsupported currency: '{request.currency}'.",
                                         "currency")
        try:
            row, replayed = await payouts.request_payout(self.pool, merchant.id, request.currency, request.amount,
                                                         key, fingerprint)
        except PayoutRefused as refused:
            if refused.code == "idempotency_key_reused":
                raise errors.ApiError(400, "idempotency_error", refused.code, refused.message,
                                      param=refused.param) from None
            raise errors.ApiError(402, "invalid_request_error", refused.code, refused.message,
                                  param=refused.param) from None
        headers = [("idempotent-replayed", "true")] if replayed else []
        return Response(200, _encoder.encode(payout_object(row)), headers=headers)

    async def _transactions(self, merchant: Merchant, query: str) -> bytes:
        params = schema.query_params(query)
        limit = schema.int_param(params, "limit", 10, 1, 100)
        before = None
        if (cursor := params.get("starting_after")) is not None:
            if not (match := _TRANSACTION_ID.match(cursor)) or int(match.group(1)) > BIGINT_MAX:
                raise errors.invalid_request("parameter_invalid", "starting_after must be a balance transaction "
                                             "id (txn_...).", "starting_after")
            before = int(match.group(1))
        pending, available = postings.pending_account(merchant.id), postings.available_account(merchant.id)
        rows = await payout_store.entries(self.pool, pending, available, before, limit + 1)
        data = [BalanceTransaction(f"txn_{row['id']}", _TYPES.get(row["posting_id"].split(":", 1)[0], "adjustment"),
                                   -row["amount"], row["currency"],
                                   "available" if row["account"] == available else "pending",
                                   row["payment_id"] or _source(row["posting_id"]),
                                   int(row["created_at"].timestamp())) for row in rows[:limit]]
        return _encoder.encode(render.ListOf(data, len(rows) > limit, "/v1/balance_transactions"))

    async def _payouts(self, merchant: Merchant, query: str) -> bytes:
        params = schema.query_params(query)
        limit = schema.int_param(params, "limit", 10, 1, 100)
        status = params.get("status")
        if status is not None and status not in PAYOUT_STATUSES:
            raise errors.invalid_request("parameter_invalid", f"status is one of {', '.join(PAYOUT_STATUSES)}.",
                                         "status")
        rows = await payout_store.list_payouts(self.pool, merchant.id, status, limit + 1)
        return _encoder.encode(render.ListOf([payout_object(row) for row in rows[:limit]], len(rows) > limit,
                                          "/v1/payouts"))
