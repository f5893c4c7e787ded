"""Payments and their events: reads, the state changes outside the hot path, and fail-and-reverse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, TypeAlias

import asyncpg
import msgspec

from switch.store.records import LedgerEntry, OutboxItem, PaymentRecord, payment_record

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
_json = msgspec.json.Encoder()

PAYMENT_COLUMNS = """id, merchant_id, status, amount, currency, capture_method, amount_capturable, amount_received,
    amount_refunded, card_token, card_brand, card_last4, card_exp_month, card_exp_year, network, terminal_id,
    stan, rrn, transmitted_at, auth_code, response_code, decline_code, failure_message, description,
    statement_descriptor, metadata, card_fingerprint, fraud, review_status, deadline_at, created_at"""


async def get_payment(conn: Conn, merchant_id: str, payment_id: str) -> PaymentRecord | None:
    row = await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND merchant_id = $2",
                              payment_id, merchant_id)
    return payment_record(row) if row else None


# Claim the request's idempotency key and lock the payment it names, in one round trip. The row always comes
# back: `claimed` false when the key has its row already (the lock, if taken, goes with the rollback), and the
# payment's columns NULL when there is no such payment of this merchant.
_CLAIM_AND_LOCK = f"""
WITH claim AS (
    INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint)
    VALUES ($1, $2, 'POST', $3, $4) ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT FROM claim) AS claimed, p.*
FROM (SELECT) AS one LEFT JOIN LATERAL (
    SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $5 AND merchant_id = $1 FOR UPDATE
) AS p ON true"""


async def claim_and_lock(conn: asyncpg.Connection, merchant_id: str, key: str, path: str, fingerprint: bytes,
                         payment_id: str) -> tuple[bool, PaymentRecord | None]:
    """Claim (merchant, key) with its write-ahead row and lock the payment until the transaction ends:
    whether the key was claimed, and the payment (None when the merchant has no such payment)."""
    values = dict((await conn.fetchrow(_CLAIM_AND_LOCK, merchant_id, key, path, fingerprint, payment_id)).items())
    claimed = values.pop("claimed")
    return claimed, payment_record(values) if values["id"] is not None else None


async def list_payments(pool: asyncpg.Pool, merchant_id: str, limit: int, starting_after: str | None,
                        ending_before: str | None, created_gte: datetime | None,
                        created_lte: datetime | None) -> tuple[list[PaymentRecord], bool]:
    """Newest first, keyset pagination on (created_at, id); returns (records, has_more)."""
    conditions = ["merchant_id = $1"]
    args: list[object] = [merchant_id]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if created_gte:
        conditions.append(f"created_at >= {arg(created_gte)}")
    if created_lte:
        conditions.append(f"created_at <= {arg(created_lte)}")
    order = "DESC"
    if starting_after:
        conditions.append(f"(created_at, id) < (SELECT created_at, id FROM payments WHERE id = {arg(starting_after)} "
                          f"AND merchant_id = $1)")
    elif ending_before:
        conditions.append(f"(created_at, id) > (SELECT created_at, id FROM payments WHERE id = {arg(ending_before)} "
                          f"AND merchant_id = $1)")
        order = "ASC"
    query = (f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE {' AND '.join(conditions)} "
             f"ORDER BY created_at {order}, id {order} LIMIT {arg(limit + 1)}")
    rows = await pool.fetch(query, *args)
    has_more = len(rows) > limit
    records = [payment_record(row) for row in rows[:limit]]
    if order == "ASC":
        records.reverse()
    return records, has_more


async def update_details(conn: asyncpg.Connection, merchant_id: str, payment_id: str, description: str | None,
                         metadata: dict[str, str] | None, keys_max: int) -> PaymentRecord | None:
    """Set the payment's description and merge `metadata` into its own (an empty value removes its key);
    None when there is no such payment, or when the merge would hold more than `keys_max` keys."""
    row = await conn.fetchrow(
        "UPDATE payments SET description = COALESCE($3, description), "
        "metadata = CASE WHEN $4::jsonb IS NULL THEN metadata ELSE (SELECT COALESCE(jsonb_object_agg(key, value), "
        "'{}'::jsonb) FROM jsonb_each(metadata || $4::jsonb) WHERE value <> '\"\"'::jsonb) END, updated_at = now() "
        "WHERE id = $2 AND merchant_id = $1 AND (SELECT count(*) FROM jsonb_each(metadata || COALESCE($4::jsonb, "
        f"'{{}}'::jsonb)) WHERE value <> '\"\"'::jsonb) <= $5 RETURNING {PAYMENT_COLUMNS}",
        merchant_id, payment_id, description, metadata, keys_max)       # jsonb: the pool encodes it
    return payment_record(row) if row else None


async def insert_event(conn: asyncpg.Connection, payment_id: str, type_: str, from_status: str | None,
                       to_status: str, amount: int | None, response_code: str | None = None) -> None:
    await conn.execute("INSERT INTO payment_events (payment_id, type, from_status, to_status, amount, response_code) "
                       "VALUES ($1, $2, $3, $4, $5, $6)", payment_id, type_, from_status, to_status, amount,
                       response_code)


class Captured(NamedTuple):
    """A capture's writes, worked out by its transaction while it holds the payment's row lock."""

    payment: PaymentRecord              # as the capture leaves it (amount_received: the amount captured)
    from_status: str
    change_type: str                    # its state-change row's type (payment_events)
    advice: OutboxItem                  # the capture advice the outbox sends
    entries: list[LedgerEntry]
    event_type: str                     # the merchant event's type
    idempotency_key: str
    outcome: bytes                      # the key's answer, and the merchant event's data


# A capture's six writes in one statement, one round trip where they were six: the payment, its state-change
# row, the capture advice, the ledger entries, the merchant event and the key's answer. The payment as the
# update leaves it is worked out by the caller (it holds the row lock), not read back.
_CAPTURED = """
WITH pay AS (
    UPDATE payments SET status = $2, amount_capturable = 0, amount_received = $3, updated_at = now() WHERE id = $1
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount) VALUES ($1, $23, $4, $2, $3)
), advice AS (
    INSERT INTO network_outbox (payment_id, kind, network, original_mti, processing_code, amount, original_amount,
                                stan, rrn, transmitted_at)
    VALUES ($1, $5, $6, $7, $8, $9, $10, $11, $12, $13)
), ledger AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT * FROM unnest($14::text[], $15::text[], $16::text[], $17::bigint[], $18::text[])
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) VALUES ($19, $20, $1, $21)
)
UPDATE idempotency_keys SET outcome = $21, payment_id = $1, finished_at = now()
WHERE merchant_id = $19 AND idempotency_key = $22"""


async def write_captured(conn: asyncpg.Connection, c: Captured) -> None:
    p, a, entries = c.payment, c.advice, c.entries
    await conn.execute(_CAPTURED, p.id, p.status, p.amount_received, c.from_status, a.kind, a.network,
                       a.original_mti, a.processing_code, a.amount, a.original_amount, a.stan, a.rrn,
                       a.transmitted_at, [e.posting_id for e in entries], [e.payment_id for e in entries],
                       [e.account for e in entries], [e.amount for e in entries], [e.currency for e in entries],
                       p.merchant_id, c.event_type, c.outcome, c.idempotency_key, c.change_type)


class Claim(NamedTuple):
    """A request of a group-committed batch (switch.payments.locked), as the batch claims its key and locks
    its payment."""

    merchant_id: str
    idempotency_key: str
    request_path: str
    fingerprint: bytes
    payment_id: str


# A batch's first statement (switch.payments.locked): claim each request's key and lock each payment it
# names, of its merchant, without waiting. A payment another transaction holds is skipped (SKIP LOCKED), so
# a batch never waits on a row lock and cannot deadlock with another batch over payments; its request goes
# the one-at-a-time way instead. The first row carries the keys claimed; each row one payment locked (none:
# one row of NULLs).
_CLAIM_AND_LOCK_MANY = f"""
WITH claim AS (
    INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint)
    SELECT merchant_id, idempotency_key, 'POST', request_path, fingerprint
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
        AS k(merchant_id, idempotency_key, request_path, fingerprint)
    ON CONFLICT DO NOTHING RETURNING merchant_id, idempotency_key
)
SELECT (SELECT array_agg(merchant_id) FROM claim) AS claimed_merchants,
       (SELECT array_agg(idempotency_key) FROM claim) AS claimed_keys, p.*
FROM (SELECT) AS one LEFT JOIN LATERAL (
    SELECT {PAYMENT_COLUMNS} FROM payments
    WHERE id = ANY ($5::text[]) AND (id, merchant_id) IN (SELECT * FROM unnest($5::text[], $6::text[]))
    FOR UPDATE SKIP LOCKED
) AS p ON true"""
CLAIM_AND_LOCK_MANY_ARGUMENTS = 6


async def claim_and_lock_many(conn: asyncpg.Connection, claims: Sequence[Claim]
                              ) -> tuple[set[tuple[str, str]], dict[str, PaymentRecord]]:
    """Claim each (merchant, key) of `claims` (no two alike) and lock the payments they name, each of its
    merchant, that no other transaction holds, until the caller's transaction ends: the (merchant, key)
    pairs claimed, and the payments locked by id."""
    named = {(c.payment_id, c.merchant_id) for c in claims}
    rows = await conn.fetch(_CLAIM_AND_LOCK_MANY, [c.merchant_id for c in claims], [c.idempotency_key for c in claims],
                            [c.request_path for c in claims], [c.fingerprint for c in claims],
                            [payment_id for payment_id, _ in named], [merchant for _, merchant in named])
    claimed = set(zip(rows[0]["claimed_merchants"] or (), rows[0]["claimed_keys"] or (), strict=True))
    locked = {}
    for row in rows:
        values = dict(row.items())
        del values["claimed_merchants"], values["claimed_keys"]
        if values["id"] is not None:
            locked[values["id"]] = payment_record(values)
    return claimed, locked


class CapturedRow(msgspec.Struct):
    """One capture of a batch as _CAPTURED_MANY reads it (json_to_recordset: by field name): the payment's
    new state, its state-change row, its capture advice, and the answer its key and merchant event carry."""

    id: str
    status: str
    amount_received: int
    from_status: str
    change_type: str
    merchant_id: str
    event_type: str
    outcome: bytes                      # travels as base64
    idempotency_key: str
    kind: str
    network: str
    original_mti: str
    processing_code: str
    amount: int
    original_amount: int
    stan: str
    rrn: str
    transmitted_at: str


# A batch of captures' writes in one statement: for each capture the same six writes as _CAPTURED, and the
# keys the batch claimed but did not use (a refused capture, one whose payment another transaction held)
# deleted, as the one-at-a-time path's rollback would leave them. The captures come as one JSON array,
# the ledger entries as arrays. The payments are found by `id = ANY ($2)`, whatever the statistics.
_CAPTURED_MANY = """
WITH input AS MATERIALIZED (
    SELECT id, status, amount_received, from_status, change_type, merchant_id, event_type,
           decode(outcome, 'base64') AS outcome, idempotency_key, kind, network, original_mti, processing_code,
           amount, original_amount, stan, rrn, transmitted_at
    FROM json_to_recordset($1::json)
        AS t(id text, status text, amount_received bigint, from_status text, change_type text, merchant_id text,
             event_type text, outcome text, idempotency_key text, kind text, network text, original_mti text,
             processing_code text, amount bigint, original_amount bigint, stan text, rrn text, transmitted_at text)
), pay AS (
    UPDATE payments p SET status = i.status, amount_capturable = 0, amount_received = i.amount_received,
        updated_at = now()
    FROM input i WHERE p.id = ANY ($2::text[]) AND p.id = i.id
), state_change AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, change_type, from_status, status, amount_received FROM input
), advice AS (
    INSERT INTO network_outbox (payment_id, kind, network, original_mti, processing_code, amount, original_amount,
                                stan, rrn, transmitted_at)
    SELECT id, kind, network, original_mti, processing_code, amount, original_amount, stan, rrn, transmitted_at
    FROM input
), ledger AS (
    INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency)
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[])
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) SELECT merchant_id, event_type, id, outcome FROM input
), answered AS (
    UPDATE idempotency_keys k SET outcome = i.outcome, payment_id = i.id, finished_at = now()
    FROM input i WHERE k.merchant_id = i.merchant_id AND k.idempotency_key = i.idempotency_key
)
DELETE FROM idempotency_keys k USING unnest($8::text[], $9::text[]) AS r(merchant_id, idempotency_key)
WHERE k.merchant_id = r.merchant_id AND k.idempotency_key = r.idempotency_key"""
CAPTURED_MANY_ARGUMENTS = 9


async def write_captured_many(conn: asyncpg.Connection, captures: Sequence[Captured],
                              released: Sequence[tuple[str, str]]) -> None:
    """Write `captures` (payments this transaction holds) and delete the `released` (merchant, key) claims."""
    rows = [CapturedRow(c.payment.id, c.payment.status, c.payment.amount_received, c.from_status, c.change_type,
                        c.payment.merchant_id, c.event_type, c.outcome, c.idempotency_key, c.advice.kind,
                        c.advice.network, c.advice.original_mti, c.advice.processing_code, c.advice.amount,
                        c.advice.original_amount, c.advice.stan, c.advice.rrn, c.advice.transmitted_at)
            for c in captures]
    entries = [entry for c in captures for entry in c.entries]
    await conn.execute(_CAPTURED_MANY, _json.encode(rows).decode(), [row.id for row in rows],
                       [e.posting_id for e in entries], [e.payment_id for e in entries],
                       [e.account for e in entries], [e.amount for e in entries], [e.currency for e in entries],
                       [merchant for merchant, _ in released], [key for _, key in released])


async def update_canceled(conn: asyncpg.Connection, payment_id: str, status: str) -> PaymentRecord:
    row = await conn.fetchrow(
        f"UPDATE payments SET status = $2, amount_capturable = 0, updated_at = now() "
        f"WHERE id = $1 RETURNING {PAYMENT_COLUMNS}", payment_id, status)
    return payment_record(row)


# A payment that never got its answer: failed with its event, its idempotency key answered, and when the
# request may have reached the network, its reversal queued (the row given as data, switch.outbox.items),
# all in one statement. The timeout path and recovery both use it; nothing happens (no row) when the
# payment already left `processing`. The timeout path knows the key and its merchant (a primary-key update:
# with the merchant taken from `pay` instead, the plan searched the key's index by its second column alone);
# recovery takes both from the payment's row (found by payment id alone, it read every key of the merchant).
# The event's amount is what the payment now holds (0), as for every answer.
def _fail_statement(key_known: bool) -> str:
    by_key = "k.merchant_id = $16 AND k.idempotency_key = $15"
    key = by_key if key_known else "k.idempotency_key = pay.idempotency_key AND k.payment_id = pay.id"
    return f"""
WITH pay AS (
    UPDATE payments SET status = 'failed', amount_capturable = 0, amount_received = 0, auth_code = NULL,
        response_code = NULL, decline_code = NULL, failure_message = $2, updated_at = now()
    WHERE id = $1 AND status = 'processing'
    RETURNING {PAYMENT_COLUMNS}, idempotency_key
), event AS (
    INSERT INTO payment_events (payment_id, type, from_status, to_status, amount)
    SELECT id, $3, 'processing', 'failed', amount_received FROM pay
), reversal AS (
    INSERT INTO network_outbox (payment_id, kind, network, original_mti, processing_code, amount, original_amount,
                                stan, rrn, transmitted_at)
    SELECT id, $5::text, $6::text, $7::text, $8::text, $9::bigint, $10::bigint, $11::text, $12::text, $13::text
    FROM pay WHERE $14::boolean
), merchant_event AS (
    INSERT INTO events (merchant_id, type, object_id, data) SELECT merchant_id, 'payment.failed', id, $4 FROM pay
), idem AS (
    UPDATE idempotency_keys k SET outcome = $4, finished_at = now()
    FROM pay WHERE k.merchant_id = pay.merchant_id AND {key} AND k.outcome IS NULL
)
SELECT {PAYMENT_COLUMNS} FROM pay"""


FAIL_BY_KEY = _fail_statement(key_known=True)
FAIL_BY_PAYMENT = _fail_statement(key_known=False)


async def update_failed(conn: Conn, payment_id: str, merchant_id: str, failure: str, event_type: str,
                        outcome: bytes, reversal: OutboxItem | None,
                        idempotency_key: str | None) -> PaymentRecord | None:
    """Fail a payment still `processing`, answer its key, and queue `reversal` unless None. Returns None,
    writing nothing, when the payment had already left `processing`."""
    r = reversal
    queued = (r.kind, r.network, r.original_mti, r.processing_code, r.amount, r.original_amount, r.stan, r.rrn,
              r.transmitted_at, True) if r else (None,) * 9 + (False,)
    if idempotency_key is None:
        row = await conn.fetchrow(FAIL_BY_PAYMENT, payment_id, failure, event_type, outcome, *queued)
    else:
        row = await conn.fetchrow(FAIL_BY_KEY, payment_id, failure, event_type, outcome, *queued, idempotency_key,
                                  merchant_id)
    return payment_record(row) if row else None


# Recovery reads the in-flight partial indexes (payments_in_flight, refunds_in_flight) in deadline order,
# one entry at a time. That index keeps an entry for every payment that has left `processing` until vacuum
# removes it. A plain index scan visits each such entry's row once and marks the entry dead, and later passes
# step over it. A bitmap scan never marks them: during a bench, at 22,514 finished payments since the last
# vacuum, each pass re-read 2,649 pages of `payments` (14 ms), every worker every second, growing until
# vacuum. The planner chose the bitmap scan for its estimate of a few dozen rows, so recovery takes the index scan.
IN_FLIGHT_SCAN = "SET LOCAL enable_indexscan = on; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off"

OVERDUE_PAYMENTS = (f"SELECT {PAYMENT_COLUMNS} FROM payments "
                    "WHERE status = 'processing' AND deadline_at < now() - make_interval(secs => $1) "
                    "ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED")


async def lock_overdue_payments(conn: asyncpg.Connection, grace_s: float, batch_max: int) -> list[PaymentRecord]:
    """Payments still `processing` past their deadline plus `grace_s` (their worker died mid-flight). Inside
    the caller's transaction, whose settings it changes (IN_FLIGHT_SCAN)."""
    await conn.execute(IN_FLIGHT_SCAN)
    rows = await conn.fetch(OVERDUE_PAYMENTS, grace_s, batch_max)
    return [payment_record(row) for row in rows]
