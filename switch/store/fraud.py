"""Fraud screening's rows: rule set versions, list items, the audit trail, reviews, and the payments a
backtest reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from switch.store.payments import PAYMENT_COLUMNS
from switch.store.records import PaymentRecord, payment_record


async def get_rule_set(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str) -> asyncpg.Record | None:
    """The merchant's rule set in force (version, rules, fail_closed, actor, created_at), or None."""
    return await conn.fetchrow(
        "SELECT version, rules, fail_closed, actor, created_at FROM fraud_rule_sets WHERE merchant_id = $1 "
        "ORDER BY version DESC LIMIT 1", merchant_id)


async def insert_rule_set(conn: asyncpg.Connection, merchant_id: str, rules: list[dict[str, Any]],
                          fail_closed: bool, actor: str) -> asyncpg.Record:
    """A new version after the latest (the merchant row is locked, so concurrent updates queue)."""
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
        row = await conn.fetchrow(
            "INSERT INTO fraud_rule_sets (merchant_id, version, rules, fail_closed, actor) "
            "SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM fraud_rule_sets WHERE merchant_id = $1 "
            "RETURNING version, rules, fail_closed, actor, created_at", merchant_id, rules, fail_closed, actor)
        await insert_audit(conn, merchant_id, actor, "rules.updated",
                           {"version": row["version"], "rules": rules, "fail_closed": fail_closed})
        return row


async def get_lists(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str) -> dict[str, list[str]]:
    rows = await conn.fetch("SELECT list_name, value FROM fraud_list_items WHERE merchant_id = $1", merchant_id)
    lists: dict[str, list[str]] = {}
    for row in rows:
        lists.setdefault(row["list_name"], []).append(row["value"])
    return lists


async def get_list(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, name: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT value, actor, created_at FROM fraud_list_items WHERE merchant_id = $1 AND "
                            "list_name = $2 ORDER BY value", merchant_id, name)


async def count_list_items(conn: asyncpg.Connection, merchant_id: str, name: str) -> tuple[int, int]:
    """(values in this list, lists the merchant has), counted under the merchant row's lock."""
    await conn.execute("SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE list_name = $2) AS items, count(DISTINCT list_name) AS lists "
        "FROM fraud_list_items WHERE merchant_id = $1", merchant_id, name)
    return row["items"], row["lists"]


async def insert_list_item(conn: asyncpg.Connection, merchant_id: str, name: str, value: str, actor: str) -> bool:
    async with conn.transaction():
        status = await conn.execute(
            "INSERT INTO fraud_list_items (merchant_id, list_name, value, actor) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING", merchant_id, name, value, actor)
        added = status.endswith(" 1")
        if added:
            await insert_audit(conn, merchant_id, actor, "list.added", {"list": name, "value": value})
        return added


async def delete_list_item(conn: asyncpg.Connection, merchant_id: str, name: str, value: str, actor: str) -> bool:
    async with conn.transaction():
        status = await conn.execute(
            "DELETE FROM fraud_list_items WHERE merchant_id = $1 AND list_name = $2 AND value = $3",
            merchant_id, name, value)
        removed = status.endswith(" 1")
        if removed:
            await insert_audit(conn, merchant_id, actor, "list.removed", {"list": name, "value": value})
        return removed


async def insert_audit(conn: asyncpg.Connection, merchant_id: str, actor: str, action: str,
                       detail: dict[str, Any]) -> None:
    await conn.execute("INSERT INTO fraud_audit (merchant_id, actor, action, detail) VALUES ($1, $2, $3, $4)",
                       merchant_id, actor, action, detail)


async def list_open_reviews(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str,
                            limit: int) -> list[PaymentRecord]:
    rows = await conn.fetch(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND review_status = 'open' "
        "AND status = 'requires_capture' ORDER BY created_at DESC, id DESC LIMIT $2", merchant_id, limit)
    return [payment_record(row) for row in rows]


async def update_review(conn: asyncpg.Connection, merchant_id: str, payment_id: str, status: str,
                        actor: str) -> PaymentRecord | None:
    """Close an open review (approved or rejected); None when the payment has no open review."""
    row = await conn.fetchrow(
        f"UPDATE payments SET review_status = $3, updated_at = now() WHERE id = $2 AND merchant_id = $1 "
        f"AND review_status = 'open' RETURNING {PAYMENT_COLUMNS}", merchant_id, payment_id, status)
    if row is None:
        return None
    await insert_audit(conn, merchant_id, actor, f"review.{status}", {"payment": payment_id})
    return payment_record(row)


async def screened_payments(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, since: datetime,
                            limit: int) -> list[asyncpg.Record]:
    """What a backtest needs of each screened payment: its signals, decision, and how it ended."""
    return await conn.fetch(
        "SELECT p.id, p.status, p.fraud, p.signals, p.amount_refunded, "
        "EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = p.id AND e.type = 'payment.canceled') "
        "AS canceled FROM payments p "
        "WHERE p.merchant_id = $1 AND p.created_at >= $2 AND p.signals IS NOT NULL ORDER BY p.created_at DESC "
        "LIMIT $3",
        merchant_id, since, limit)


async def get_signals(conn: asyncpg.Connection | asyncpg.Pool, payment_id: str) -> bytes | None:
    """The signals the fraud screen saw for a payment, as stored (None when it was not screened)."""
    return await conn.fetchval("SELECT signals FROM payments WHERE id = $1", payment_id)
