"""The network outbox: store-and-forward rows claimed with a lease (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import asyncpg

from switch.store.records import OutboxItem

# The outbox keeps every row it ever sent (settlement reads the capture advices), so its statements must
# reach their rows by key: the due ones through network_outbox_due, then each by its id (= ANY of an
# array, not a join the planner could make over the whole table). The sender's pool has sequential scans
# off (switch.common.pg_settings.KEYED_ONLY): on a new stack the table is empty, and a connection kept the
# sequential scans it planned then, over 1.3 million rows read in a 40 s bench.
# A refund's 0200 carries its own terminal id (field 41), which its reversal must repeat.
_CLAIM = """
UPDATE network_outbox o SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM payments p
WHERE o.id = ANY (ARRAY (SELECT id FROM network_outbox WHERE acknowledged_at IS NULL AND next_attempt_at <= now()
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))
  AND p.id = o.payment_id
RETURNING o.id, o.kind, o.network, o.original_mti, o.processing_code, o.amount, o.original_amount, o.stan, o.rrn,
          o.transmitted_at, o.attempts, p.merchant_id, p.card_token, p.currency, p.auth_code,
          COALESCE((SELECT r.terminal_id FROM refunds r WHERE r.id = o.refund_id), p.terminal_id) AS terminal_id"""


async def insert_outbox(conn: asyncpg.Connection | asyncpg.Pool, item: OutboxItem) -> int:
    i = item
    return int(await conn.fetchval(
        "INSERT INTO network_outbox (payment_id, kind, refund_id, network, original_mti, processing_code, amount, "
        "original_amount, stan, rrn, transmitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "RETURNING id", i.payment_id, i.kind, i.refund_id, i.network, i.original_mti, i.processing_code, i.amount,
        i.original_amount, i.stan, i.rrn, i.transmitted_at))


async def update_outbox_claimed(pool: asyncpg.Pool, batch_max: int, lease_s: float) -> list[asyncpg.Record]:
    """Claim up to `batch_max` due rows for `lease_s` (invisible to other senders meanwhile)."""
    return await pool.fetch(_CLAIM, batch_max, lease_s)


_ACKNOWLEDGED = """
UPDATE network_outbox o SET acknowledged_at = now(),
    response_code = (SELECT a.code FROM unnest($1::bigint[], $2::text[]) AS a(id, code) WHERE a.id = o.id)
WHERE o.id = ANY ($1::bigint[])"""


async def update_outbox_acknowledged(pool: asyncpg.Pool, acknowledged: list[tuple[int, str]]) -> None:
    """Rows the network acknowledged, with each one's response code: one statement for a sending pass."""
    await pool.execute(_ACKNOWLEDGED, [outbox_id for outbox_id, _ in acknowledged], [code for _, code in acknowledged])


async def update_outbox_retry(pool: asyncpg.Pool, outbox_id: int, delay_s: float,
                              response_code: str | None = None) -> None:
    """Due again after `delay_s`; with the code of an answer that did not end the row (while
    acknowledged_at is null, response_code says why the row is still waiting)."""
    await pool.execute("UPDATE network_outbox SET next_attempt_at = now() + make_interval(secs => $2), "
                       "response_code = COALESCE($3, response_code) WHERE id = $1", outbox_id, delay_s, response_code)


async def count_unacknowledged(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM network_outbox WHERE acknowledged_at IS NULL"))
