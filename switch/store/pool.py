"""The connection pool, transactions, and the health probe."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from switch.common.outage import Outage
from switch.common.pg_settings import NO_JIT

# Postgres cannot be reached or is going away (restart, failover, overload): the request may be retried.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError, asyncpg.InterfaceError, OSError)


# Postgres as the request paths see it: the batched writer and the front end report to it.
POSTGRES = Outage("postgres")


def is_statement_error(error: BaseException) -> bool:
    """Postgres ran the statement and refused it (a value, a constraint, a trigger): the fault of a row,
    not of the connection, so a batch that failed this way is split to find the row."""
    return isinstance(error, asyncpg.PostgresError) and not isinstance(error, UNAVAILABLE)


def is_bad_value(error: BaseException) -> bool:
    """A row refused for its values (data exception, constraint violation)."""
    return isinstance(error, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError))


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: we keep no session state (no SET, LISTEN, advisory locks or temp tables), so the
    reset query asyncpg would otherwise send on every release is a wasted round trip. Open transactions are
    still rolled back by asyncpg before this hook runs. (PaymentWriter's sessions undo their SET before
    they come back: PaymentWriter._give_back.)"""


async def create_pool(url: str, size_max: int, server_settings: dict[str, str] | None = None) -> asyncpg.Pool:
    """A pool of sessions without JIT (NO_JIT), with `server_settings` besides (e.g. pg_settings.KEYED_ONLY)."""
    pool = await asyncpg.create_pool(url, min_size=min(2, size_max), max_size=size_max, init=init_connection,
                                     reset=keep_session, command_timeout=10,
                                     server_settings={**NO_JIT, **(server_settings or {})})
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    """One connection for a command-line tool."""
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    return conn


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection inside a transaction: committed when the block ends, rolled back if it raises."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def ping(pool: asyncpg.Pool, timeout_s: float) -> bool:
    return await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout_s) == 1
