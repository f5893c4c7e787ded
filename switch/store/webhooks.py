"""Webhook endpoints, their cursors over the events (first attempts), the queue of deliveries to retry or
replay, and the log of attempts."""

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
    """Per endpoint: deliveries queued (retries, replays) plus events past its cursor (up to
    BEHIND_COUNT_MAX), and when the oldest of them was made."""
    return await conn.fetch(
        "SELECT w.id, w.merchant_id, w.url, w.status, coalesce(q.pending, 0) + b.pending AS pending, "
        "least(q.oldest, b.oldest) AS oldest FROM webhook_endpoints w "
        "LEFT JOIN (SELECT endpoint_id, count(*) AS pending, min(created_at) AS oldest FROM webhook_deliveries "
        "WHERE status = 'pending' GROUP BY endpoint_id) q ON q.endpoint_id = w.id "
        f"CROSS JOIN LATERAL ({BEHIND_CURSOR}) b "
        "WHERE ($1::text IS NULL OR w.merchant_id = $1) AND (q.pending > 0 OR b.pending > 0) "
        "ORDER BY least(q.oldest, b.oldest)", merchant_id)


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


_ENABLED_AGAIN = "$6::boolean IS NOT NULL AND NOT $6 AND status = 'disabled'"


async def update_endpoint(conn: Conn, merchant_id: str, endpoint_id: str, url: str | None,
                          enabled_events: list[str] | None, description: str | None,
                          disabled: bool | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE webhook_endpoints SET url = coalesce($3, url), enabled_events = coalesce($4, enabled_events), "
        "description = coalesce($5, description), "
        "status = CASE WHEN $6::boolean IS NULL THEN status WHEN $6 THEN 'disabled' ELSE 'enabled' END, "
        "disabled_reason = CASE WHEN $6::boolean IS NULL THEN disabled_reason WHEN $6 THEN 'by the merchant' END, "
        # enabled again: it gets the events from now on (a replay sends those it missed)
        f"cursor_xid = CASE WHEN {_ENABLED_AGAIN} THEN pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
        "ELSE cursor_xid END, "
        f"cursor_event_id = CASE WHEN {_ENABLED_AGAIN} THEN 0 ELSE cursor_event_id END "
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


# The attempts of one moment, group-committed, each keyed by its event and endpoint: a first attempt (from
# the cursor) that failed queues its delivery to be tried again (or failed for good); a later attempt moves
# its queued delivery (delivered, failed for good, or due again at its time).
RECORD_ATTEMPTS = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::int[], $6::text[], $7::text[],
                         $8::timestamptz[], $9::boolean[])
        AS t(event_id, endpoint_id, http_status, error, latency_ms, excerpt, status, next_attempt_at, first)
), logged AS (
    INSERT INTO webhook_attempts (event_id, endpoint_id, http_status, error, latency_ms, excerpt)
    SELECT event_id, endpoint_id, http_status, error, latency_ms, excerpt FROM input
), queued AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at)
    SELECT event_id, endpoint_id, status, 1, coalesce(next_attempt_at, now()) FROM input
    WHERE first AND status <> 'delivered'
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
), moved AS (
    UPDATE webhook_deliveries d SET status = i.status, attempts = d.attempts + 1,
        next_attempt_at = coalesce(i.next_attempt_at, d.next_attempt_at)
    FROM input i WHERE NOT i.first AND d.event_id = i.event_id AND d.endpoint_id = i.endpoint_id
), health AS (
    SELECT endpoint_id, bool_or(status = 'delivered') AS delivered FROM input GROUP BY endpoint_id
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


# An attempt as recorded: event, endpoint, HTTP status, error, latency, excerpt, what it leaves the delivery
# (delivered, pending, failed), when next, and whether it was the first (from the cursor).
Attempt = tuple[int, str, int | None, str | None, int, str | None, str, datetime | None, bool]


async def record_attempts(conn: Conn, attempts: list[Attempt]) -> None:
    await conn.execute(RECORD_ATTEMPTS, *(list(column) for column in zip(*attempts, strict=True)))


async def attempts_of_event(conn: Conn, merchant_id: str, event_id: int) -> list[asyncpg.Record]:
    """The event's deliveries, one per endpoint that got it or waits for it: its status (queued ones as
    queued; one that had only a first attempt is delivered, or waits past the cursor) and attempts."""
    return await conn.fetch(
        "SELECT w.id AS endpoint_id, coalesce(d.status, CASE WHEN a.id IS NULL THEN 'pending' "
        "ELSE 'delivered' END) AS status, a.attempted_at, a.http_status, a.error, a.latency_ms, a.excerpt "
        "FROM events e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id "
        "LEFT JOIN webhook_deliveries d ON d.event_id = e.id AND d.endpoint_id = w.id "
        "LEFT JOIN webhook_attempts a ON a.event_id = e.id AND a.endpoint_id = w.id "
        "WHERE e.id = $1 AND e.merchant_id = $2 AND (d.id IS NOT NULL OR a.id IS NOT NULL OR "
        "w.status = 'enabled' AND NOT w.deleted AND (e.xid, e.id) > (w.cursor_xid, w.cursor_event_id) "
        "AND (w.enabled_events @> ARRAY['*'] OR e.type = ANY (w.enabled_events))) "
        "ORDER BY w.id, a.id", event_id, merchant_id)


async def pending_count(conn: Conn) -> tuple[int, float]:
    """Deliveries still pending (queued, and events past a cursor), and how long the oldest has waited
    (seconds)."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(pending), 0) AS n, coalesce(extract(epoch FROM now() - min(oldest)), 0) AS age FROM ("
        "SELECT count(*) AS pending, min(created_at) AS oldest FROM webhook_deliveries WHERE status = 'pending' "
        f"UNION ALL SELECT b.* FROM webhook_endpoints w CROSS JOIN LATERAL ({BEHIND_CURSOR}) b) waiting")
    return int(row["n"]), float(row["age"])


# What waits past an endpoint `w`'s cursor (for a lateral join): how many of its events (counted up to
# BEHIND_COUNT_MAX) and the oldest one's time. Counted in the cursor's order: the planner expects a third of
# the merchant's events past a cursor it cannot see, and once that outnumbered the bound, a sequential scan
# stopping at the bound looked cheapest (every event read, every 5 s, by the backlog sample). Ordered, the
# range of events_delivery is the cheapest way to stop there (tests/integration/test_write_plans.py).
BEHIND_COUNT_MAX = 100_000
BEHIND_CURSOR = f"""
SELECT count(*) AS pending, min(created_at) AS oldest FROM (
    SELECT e.created_at FROM events e
    WHERE w.status = 'enabled' AND NOT w.deleted AND e.merchant_id = w.merchant_id
      AND (e.xid, e.id) > (w.cursor_xid, w.cursor_event_id)
      AND (w.enabled_events @> ARRAY['*'] OR e.type = ANY (w.enabled_events))
    ORDER BY e.xid, e.id LIMIT {BEHIND_COUNT_MAX}) behind"""


# The endpoints this worker delivers from the cursor of: those it holds, and those nobody holds (or whose
# holder's lease ran out) while events wait past their cursors. Held until `lease_s` from now. It asks for
# the first event past the cursor in the cursor's order, so it is one probe of events_delivery. An EXISTS
# (whose ORDER BY and LIMIT the planner drops) read the events from the oldest on until it found one past
# the cursor, once most events were one merchant's (at 20,000 already: tests/integration/test_write_plans.py).
LEASE = """
WITH mine AS (
    SELECT w.id FROM webhook_endpoints w
    WHERE w.status = 'enabled' AND NOT w.deleted
      AND (w.lease_owner = $1 AND w.lease_until > now()
           OR (w.lease_until IS NULL OR w.lease_until < now())
              AND (SELECT e.id FROM events e WHERE e.merchant_id = w.merchant_id
                   AND (e.xid, e.id) > (w.cursor_xid, w.cursor_event_id) ORDER BY e.xid, e.id LIMIT 1) IS NOT NULL)
    ORDER BY w.lease_owner IS NOT DISTINCT FROM $1 DESC, w.id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_endpoints w SET lease_owner = $1, lease_until = now() + make_interval(secs => $3)
FROM mine WHERE w.id = mine.id
RETURNING w.id AS endpoint_id, w.merchant_id, w.url, w.secret, w.status, w.format, w.cursor_xid, w.cursor_event_id,
          CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous_secret"""


async def lease_cursors(conn: Conn, owner: str, endpoints_max: int, lease_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(LEASE, owner, endpoints_max, lease_s)


# Up to `batch_max` events past each cursor that its endpoint subscribes to, in (xid, id) order, from
# transactions older than the oldest one still running (so none that commits later can fall behind the
# cursor); with that horizon, where a cursor moves to once all of an endpoint's events before it are read.
# An endpoint with none gets one row with no event.
FETCH = """
SELECT c.endpoint_id, e.id AS event_id, e.xid, e.type, e.object_id, e.data, e.created_at,
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[]) AS c(endpoint_id, cursor_xid, cursor_event_id, batch_max)
JOIN webhook_endpoints w ON w.id = c.endpoint_id
LEFT JOIN LATERAL (
    SELECT e.id, e.xid, e.type, e.object_id, e.data, e.created_at FROM events e
    WHERE e.merchant_id = w.merchant_id AND (e.xid, e.id) > (c.cursor_xid, c.cursor_event_id)
      AND e.xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
      AND (w.enabled_events @> ARRAY['*'] OR e.type = ANY (w.enabled_events))
    ORDER BY e.xid, e.id LIMIT c.batch_max
) e ON true
ORDER BY c.endpoint_id, e.xid, e.id"""


async def fetch_past_cursors(conn: Conn, cursors: list[tuple[str, int, int, int]]) -> list[asyncpg.Record]:
    """`cursors`: (endpoint, cursor xid, cursor event id, batch max) each."""
    return await conn.fetch(FETCH, *(list(column) for column in zip(*cursors, strict=True)))


# Cursors moved forward (never back), by the worker that holds them.
ADVANCE = """
UPDATE webhook_endpoints w SET cursor_xid = c.xid, cursor_event_id = c.event_id
FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS c(endpoint_id, xid, event_id)
WHERE w.id = c.endpoint_id AND w.lease_owner = $1 AND (w.cursor_xid, w.cursor_event_id) < (c.xid, c.event_id)"""


async def advance_cursors(conn: Conn, owner: str, cursors: list[tuple[str, int, int]]) -> None:
    await conn.execute(ADVANCE, owner, *(list(column) for column in zip(*cursors, strict=True)))
