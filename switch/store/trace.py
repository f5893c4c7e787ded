"""Trace number blocks (see the comment on ``trace_blocks`` in schema.sql)."""

from __future__ import annotations

import asyncpg


async def next_trace_block(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT nextval('trace_blocks')"))
