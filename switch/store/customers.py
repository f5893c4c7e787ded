"""Customers and their saved cards (the Stripe-compatible API's Customers and PaymentMethods): a card is
its vault token with what may be shown of it (brand, last 4, expiry), never its number."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

CUSTOMER_COLUMNS = "id, merchant_id, email, name, description, metadata, created_at"
METHOD_COLUMNS = "token, merchant_id, customer_id, brand, last4, exp_month, exp_year, fingerprint, created_at"


class CustomerRecord(msgspec.Struct, kw_only=True):
    id: str
    merchant_id: str
    email: str | None
    name: str | None
    description: str | None
    metadata: dict[str, str]
    created_at: datetime


class SavedCard(msgspec.Struct, kw_only=True):
    token: str
    merchant_id: str
    customer_id: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None
    created_at: datetime


def _customer(row: Any) -> CustomerRecord:
    return CustomerRecord(**dict(row.items()))


def _card(row: Any) -> SavedCard:
    return SavedCard(**dict(row.items()))


async def insert_customer(pool: asyncpg.Pool, customer: CustomerRecord, idempotency_key: str,
                          fingerprint: bytes) -> tuple[CustomerRecord, bytes]:
    """The customer, or the one this idempotency key made before, with the fingerprint of the request that
    made it (a replay has the same one)."""
    values = (customer.id, customer.merchant_id, customer.email, customer.name, customer.description,
              customer.metadata, idempotency_key, fingerprint)
    query = (
        "WITH made AS (INSERT INTO customers (id, merchant_id, email, name, description, metadata, idempotency_key, "
        "fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING "
        f"RETURNING {CUSTOMER_COLUMNS}, fingerprint) SELECT * FROM made UNION ALL SELECT {CUSTOMER_COLUMNS}, "
        "fingerprint FROM customers WHERE merchant_id = $2 AND idempotency_key = $7 LIMIT 1")
    row = await pool.fetchrow(query, *values)
    if row is None:          # a concurrent insert with the same key committed after this statement began
        row = await pool.fetchrow(f"SELECT {CUSTOMER_COLUMNS}, fingerprint FROM customers WHERE merchant_id = $1 "
                                  "AND idempotency_key = $2", customer.merchant_id, idempotency_key)
    values_ = dict(row.items())
    made_by = values_.pop("fingerprint")
    return CustomerRecord(**values_), made_by


async def get_customer(pool: asyncpg.Pool, merchant_id: str, customer_id: str) -> CustomerRecord | None:
    row = await pool.fetchrow(f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND merchant_id = $2",
                              customer_id, merchant_id)
    return _customer(row) if row else None


async def save_card(pool: asyncpg.Pool, card: SavedCard) -> SavedCard:
    """The card's row; the same token saved again (the vault answers one token per card) keeps its row."""
    row = await pool.fetchrow(
        "INSERT INTO payment_methods (token, merchant_id, customer_id, brand, last4, exp_month, exp_year, "
        "fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token) DO UPDATE SET "
        "customer_id = COALESCE(EXCLUDED.customer_id, payment_methods.customer_id) "
        f"WHERE payment_methods.merchant_id = EXCLUDED.merchant_id RETURNING {METHOD_COLUMNS}",
        card.token, card.merchant_id, card.customer_id, card.brand, card.last4, card.exp_month, card.exp_year,
        card.fingerprint)
    if row is None:
        raise ValueError("the token belongs to another merchant")
    return _card(row)


async def get_card(pool: asyncpg.Pool, merchant_id: str, token: str) -> SavedCard | None:
    row = await pool.fetchrow(f"SELECT {METHOD_COLUMNS} FROM payment_methods WHERE token = $1 AND merchant_id = $2",
                              token, merchant_id)
    return _card(row) if row else None


async def set_customer(pool: asyncpg.Pool, merchant_id: str, token: str, customer_id: str | None) -> SavedCard | None:
    """Attach the card to a customer (or detach it with None); None when the merchant has no such card."""
    row = await pool.fetchrow(f"UPDATE payment_methods SET customer_id = $3 WHERE token = $1 AND merchant_id = $2 "
                              f"RETURNING {METHOD_COLUMNS}", token, merchant_id, customer_id)
    return _card(row) if row else None


async def list_cards(pool: asyncpg.Pool, merchant_id: str, customer_id: str,
                     limit: int) -> tuple[list[SavedCard], bool]:
    rows = await pool.fetch(f"SELECT {METHOD_COLUMNS} FROM payment_methods WHERE merchant_id = $1 AND "
                            "customer_id = $2 ORDER BY created_at DESC, token DESC LIMIT $3", merchant_id, customer_id,
                            limit + 1)
    return [_card(row) for row in rows[:limit]], len(rows) > limit
