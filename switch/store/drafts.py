"""PaymentIntents not confirmed yet (the Stripe-compatible API's drafts): one row each, made once per
idempotency key."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

DRAFT_COLUMNS = ("id, merchant_id, amount, currency, payment_method, params, canceled, fingerprint, created_at, "
                 "confirming_at")


class DraftRecord(msgspec.Struct, kw_only=True):
    id: str
    merchant_id: str
    amount: int
    currency: str
    payment_method: str | None
    params: bytes
    canceled: bool
    fingerprint: bytes
    created_at: datetime
    confirming_at: datetime | None = None     # a confirmation's claim (claim_draft)


async def insert_draft(pool: asyncpg.Pool, draft: DraftRecord, idempotency_key: str) -> DraftRecord:
    """The draft, or the one this idempotency key made before (whose fingerprint tells a replay from a reuse)."""
    row = await pool.fetchrow(
        "WITH made AS (INSERT INTO payment_intent_drafts (id, merchant_id, amount, currency, payment_method, params, "
        "idempotency_key, fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        f"ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING {DRAFT_COLUMNS}) "
        f"SELECT {DRAFT_COLUMNS} FROM made UNION ALL SELECT {DRAFT_COLUMNS} FROM payment_intent_drafts "
        "WHERE merchant_id = $2 AND idempotency_key = $7 LIMIT 1",
        draft.id, draft.merchant_id, draft.amount, draft.currency, draft.payment_method, draft.params,
        idempotency_key, draft.fingerprint)
    if row is None:          # a concurrent insert with the same key committed after this statement began
        row = await pool.fetchrow(f"SELECT {DRAFT_COLUMNS} FROM payment_intent_drafts WHERE merchant_id = $1 AND "
                                  "idempotency_key = $2", draft.merchant_id, idempotency_key)
    return DraftRecord(**dict(row.items()))


async def get_draft(pool: asyncpg.Pool, merchant_id: str, draft_id: str) -> DraftRecord | None:
    row = await pool.fetchrow(f"SELECT {DRAFT_COLUMNS} FROM payment_intent_drafts WHERE id = $1 AND merchant_id = $2",
                              draft_id, merchant_id)
    return DraftRecord(**dict(row.items())) if row else None


# A confirmation claims its draft before it reads it, and a cancel does not cancel a draft claimed this
# recently: the confirmation may be writing its payment. Far longer than a payment's budget (after which it
# can no longer be sent); a confirmation that ends without a payment gives its claim back at once.
CLAIM_S = 60.0


async def claim_draft(pool: asyncpg.Pool, merchant_id: str, draft_id: str) -> DraftRecord | None:
    """The draft, claimed for a confirmation (its confirming_at set now) unless it was canceled (then returned
    as it is, unclaimed); None when there is no such draft."""
    row = await pool.fetchrow(
        "UPDATE payment_intent_drafts SET confirming_at = CASE WHEN canceled THEN confirming_at ELSE now() END "
        f"WHERE id = $1 AND merchant_id = $2 RETURNING {DRAFT_COLUMNS}", draft_id, merchant_id)
    return DraftRecord(**dict(row.items())) if row else None


async def release_draft(pool: asyncpg.Pool, merchant_id: str, draft_id: str, claimed_at: datetime) -> None:
    """A confirmation that made no payment gives its claim back (unless a later one claimed the draft): one
    statement, which looks for the payment itself."""
    await pool.execute("UPDATE payment_intent_drafts SET confirming_at = NULL WHERE id = $1 AND merchant_id = $2 "
                       "AND confirming_at = $3 AND NOT EXISTS (SELECT 1 FROM payments WHERE id = $1)",
                       draft_id, merchant_id, claimed_at)


async def cancel_draft(pool: asyncpg.Pool, merchant_id: str, draft_id: str) -> DraftRecord | None:
    """The draft, canceled unless a confirmation claimed it in the last CLAIM_S (then returned as it is, not
    canceled); None when there is no such draft."""
    row = await pool.fetchrow(
        "UPDATE payment_intent_drafts SET canceled = canceled OR confirming_at IS NULL OR "
        "confirming_at < now() - make_interval(secs => $3) WHERE id = $1 AND merchant_id = $2 "
        f"RETURNING {DRAFT_COLUMNS}", draft_id, merchant_id, CLAIM_S)
    return DraftRecord(**dict(row.items())) if row else None
