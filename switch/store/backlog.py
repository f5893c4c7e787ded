"""What waits: the queues an operator watches (outbox, webhook deliveries, open settlement exceptions), read
in one statement for the metrics sampler (switch.process.backlog). Each count runs on a partial index
(network_outbox_due, webhook_deliveries_due, settlement_matches_unmatched), or, for the events past each
webhook endpoint's cursor, on events_delivery in the cursor's order up to a bound (read once, for both the
count and the lag), so the statement stays cheap enough to run every few seconds on every worker, however
many events and lines past settlement files hold."""

from __future__ import annotations

import asyncpg

from switch.store.webhooks import BEHIND_CURSOR

BACKLOG = """
WITH behind AS (
  SELECT coalesce(sum(b.pending), 0) AS pending, min(b.oldest) AS oldest
  FROM webhook_endpoints w CROSS JOIN LATERAL ({behind}) b)
SELECT
  (SELECT coalesce(jsonb_object_agg(kind, jsonb_build_array(pending, oldest_s)), '{}'::jsonb) FROM (
     SELECT kind, count(*) AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest_s
     FROM network_outbox WHERE acknowledged_at IS NULL GROUP BY kind) o) AS outbox,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') + (SELECT pending FROM behind)
    AS webhook_pending,
  (SELECT coalesce(extract(epoch FROM now() - least(
     (SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()),
     (SELECT oldest FROM behind))), 0)::float8)
    AS webhook_lag_s,
  (SELECT count(*) FROM settlement_matches m JOIN settlement_files f ON f.id = m.file_id
     LEFT JOIN settlement_resolutions r USING (file_id, line_no)
     WHERE f.status = 'active' AND m.class <> 'matched' AND r.action IS NULL) AS settlement_exceptions_open,
  extract(epoch FROM clock_timestamp())::float8 AS database_time
""".replace("{behind}", BEHIND_CURSOR)


async def select_backlog(pool: asyncpg.Pool | asyncpg.Connection) -> asyncpg.Record:
    return await pool.fetchrow(BACKLOG)
