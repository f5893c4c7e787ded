"""Webhook endpoints, the delivery queue (filled by the `events_queue_webhooks` trigger) and the log of
attempts."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

ENDPOINT_COLUMNS = ("id, merchant_id, url, enabled_events, description, status, disabled_reason, secret, format, "
                    "created_at")


async def insert_endpoint(conn: Conn, endpoint_id: str, merchant_id: str, url: str, enabled_events: list[str],
                          description: str | None, secret: str, format_: str = "standard") -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, description, secret, format) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id, merchant_id, url, enabled_events, description, secret, format_)


async def roll_secret(conn: Conn, merchant_id: str, endpoint_id: str, secret: str,
                      overlap_s: int) -> asyncpg.Record | None:
    """A new secret; the one it replaces also signs for `overlap_s` more seconds."""
    return await conn.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3, "
        "previous_secret_expires_at = now() + make_interval(secs => $4) "
        f"WHERE id = $1 AND merchant_id = $2 AND NOT deleted RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id, merchant_id, secret, overlap_s)


async def pending_by_endpoint(conn: Conn, merchant_id: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT w.id, w.merchant_id, w.url, w.status, count(d.id) AS pending, min(d.created_at) AS oldest "
        "FROM webhook_endpoints w JOIN webhook_deliveries d ON d.endpoint_id = w.id AND d.status = 'pending' "
        "WHERE ($1::text IS NULL OR w.merchant_id = $1) GROUP BY w.id ORDER BY min(d.created_at)", merchant_id)


async def replay(conn: Conn, event_id: int | None, endpoint_id: str | None, since: datetime | None) -> int:
    """Queue again (due now) the deliveries of one event to its subscribed endpoints, or of one endpoint's
    events since `since`, delivered or not; events the endpoint never got (it was disabled, or newer
    than them) are queued too. How many."""
    status = await conn.execute(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id) "
        "SELECT e.id, w.id FROM events e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id "
        "WHERE NOT w.deleted AND (w.enabled_events @> ARRAY['*'] OR e.type = ANY (w.enabled_events)) "
        "AND ($1::bigint IS NULL OR e.id = $1) AND ($2::text IS NULL OR w.id = $2) "
        "AND ($3::timestamptz IS NULL OR e.created_at >= $3) "
        "ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', next_attempt_at = now()",
        event_id, endpoint_id, since)
    return int(status.split()[-1])


async def lock_merchant(conn: asyncpg.Connection, merchant_id: str) -> None:
    """A merchant's endpoints are created one at a time (to the end of the transaction): the cap holds."""
    await conn.execute("SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)


async def count_endpoints(conn: Conn, merchant_id: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1 AND NOT deleted",
                                   merchant_id))


async def get_endpoint(conn: Conn, merchant_id: str, endpoint_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND "
                               "merchant_id = $2 AND NOT deleted", endpoint_id, merchant_id)


async def list_endpoints(conn: Conn, merchant_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1 AND "
                            "NOT deleted ORDER BY created_at DESC, id DESC LIMIT $2", merchant_id, limit)


async def update_endpoint(conn: Conn, merchant_id: str, endpoint_id: str, url: str | None,
                          enabled_events: list[str] | None, description: str | None,
                          disabled: bool | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE webhook_endpoints SET url = coalesce($3, url), enabled_events = coalesce($4, enabled_events), "
        "description = coalesce($5, description), "
        "status = CASE WHEN $6::boolean IS NULL THEN status WHEN $6 THEN 'disabled' ELSE 'enabled' END, "
        "disabled_reason = CASE WHEN $6::boolean IS NULL THEN disabled_reason WHEN $6 THEN 'by the merchant' END "
        f"WHERE id = $1 AND merchant_id = $2 AND NOT deleted RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id, merchant_id, url, enabled_events, description, disabled)


async def delete_endpoint(conn: Conn, merchant_id: str, endpoint_id: str) -> bool:
    """Deleted endpoints stay as rows (their deliveries and attempts keep their history) and get nothing."""
    status = await conn.execute("UPDATE webhook_endpoints SET deleted = true, status = 'disabled', "
                                "disabled_reason = 'deleted' WHERE id = $1 AND merchant_id = $2 AND NOT deleted",
                                endpoint_id, merchant_id)
    return status.endswith(" 1")


async def disable_endpoint(conn: Conn, endpoint_id: str, reason: str) -> None:
    await conn.execute("UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2 WHERE id = $1",
                       endpoint_id, reason)


# Due deliveries, at most the room each endpoint has left on this worker ($4 / $5; $2 for endpoints not
# listed), shared between endpoints: every endpoint's oldest before any endpoint's second oldest, so a dead
# endpoint's backlog of due retries never keeps another endpoint waiting (the rank is over every due row,
# as it was before the share). Leased for `lease_s` (a worker that dies with them in hand leaves them due
# again when the lease ends).
CLAIM = """
WITH room AS (
    SELECT * FROM unnest($4::text[], $5::int[]) AS r(endpoint_id, free)
), due AS (
    SELECT id FROM (
        SELECT d.id, d.endpoint_id, d.next_attempt_at,
               row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at) AS nth
        FROM webhook_deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
    ) ranked LEFT JOIN room USING (endpoint_id) WHERE nth <= coalesce(room.free, $2)
    ORDER BY nth, next_attempt_at LIMIT $1
), locked AS (
    SELECT id FROM webhook_deliveries WHERE id IN (SELECT id FROM due) FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $3)
    FROM locked WHERE d.id = locked.id AND d.status = 'pending' AND d.next_attempt_at <= now()
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.created_at
)
SELECT c.id, c.event_id, c.attempts, c.created_at AS queued_at, w.id AS endpoint_id, w.url, w.secret, w.status,
       w.format,
       CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous_secret,
       e.merchant_id, e.type, e.object_id, e.data, e.created_at AS event_created_at
FROM claimed c JOIN webhook_endpoints w ON w.id = c.endpoint_id JOIN events e ON e.id = c.event_id"""


async def claim_due(conn: Conn, batch_max: int, per_endpoint: int, lease_s: float,
                    room: dict[str, int]) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM, batch_max, per_endpoint, lease_s, list(room), list(room.values()))


# The attempts of one moment, group-committed: each with what it leaves its delivery (delivered, failed
# for good, or due again at its time).
RECORD_ATTEMPTS = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[], $7::timestamptz[])
        AS t(delivery_id, http_status, error, latency_ms, excerpt, status, next_attempt_at)
), logged AS (
    INSERT INTO webhook_attempts (delivery_id, http_status, error, latency_ms, excerpt)
    SELECT delivery_id, http_status, error, latency_ms, excerpt FROM input
), moved AS (
    UPDATE webhook_deliveries d SET status = i.status, attempts = d.attempts + 1,
        next_attempt_at = coalesce(i.next_attempt_at, d.next_attempt_at)
    FROM input i WHERE d.id = i.delivery_id
    RETURNING d.endpoint_id, i.status = 'delivered' AS delivered
), health AS (
    SELECT endpoint_id, bool_or(delivered) AS delivered FROM moved GROUP BY endpoint_id
)
UPDATE webhook_endpoints w
SET failing_since = CASE WHEN h.delivered THEN NULL ELSE coalesce(w.failing_since, now()) END
FROM health h WHERE w.id = h.endpoint_id
  AND (h.delivered AND w.failing_since IS NOT NULL OR NOT h.delivered AND w.failing_since IS NULL)"""

# Endpoints that have failed every attempt for FAILING_FOR_S: disabled, each with its event.
DISABLE_FAILING = """
WITH off AS (
    UPDATE webhook_endpoints SET status = 'disabled',
        disabled_reason = 'every delivery failed for ' || ($1::int / 86400) || ' days'
    WHERE status = 'enabled' AND NOT deleted AND failing_since < now() - make_interval(secs => $1)
    RETURNING id, merchant_id, url, enabled_events, description, status, disabled_reason, created_at
)
INSERT INTO events (merchant_id, type, object_id, data)
SELECT merchant_id, 'webhook_endpoint.disabled', id, convert_to(json_build_object(
    'id', id, 'url', url, 'enabled_events', enabled_events, 'description', description, 'status', status,
    'disabled_reason', disabled_reason, 'created', extract(epoch FROM created_at)::bigint,
    'object', 'webhook_endpoint')::text, 'UTF8') FROM off RETURNING object_id"""


async def disable_failing(conn: Conn, failing_for_s: int) -> list[str]:
    """The endpoints it disabled; each event's object is the endpoint as JSON (no secret)."""
    rows = await conn.fetch(DISABLE_FAILING, failing_for_s)
    return [row["object_id"] for row in rows]


async def record_attempts(conn: Conn, attempts: list[tuple[int, int | None, str | None, int, str | None, str,
                                                           datetime | None]]) -> None:
    await conn.execute(RECORD_ATTEMPTS, *(list(column) for column in zip(*attempts, strict=True)))


async def attempts_of_event(conn: Conn, merchant_id: str, event_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT d.id AS delivery_id, d.endpoint_id, d.status, d.attempts, a.attempted_at, a.http_status, a.error, "
        "a.latency_ms, a.excerpt FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id "
        "LEFT JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.event_id = $1 AND w.merchant_id = $2 "
        "ORDER BY d.id, a.id", event_id, merchant_id)


async def pending_count(conn: Conn) -> tuple[int, float]:
    """Deliveries still pending, and how long the oldest has waited (seconds)."""
    row = await conn.fetchrow("SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                              "AS age FROM webhook_deliveries WHERE status = 'pending'")
    return int(row["n"]), float(row["age"])
