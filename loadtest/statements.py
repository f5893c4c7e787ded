"""`make bench BENCH_ARGS=--statements`: where Postgres's time goes, per statement, during the measured run.

The stack is started with pg_stat_statements loaded (switch.dev.devstack.Stack(statements=True)); the
bench takes its counters before and after the measured window, and prints the statements that took the
most execution time in between: calls per payment, mean µs a call, µs per payment and the share of all
statements' time. Only the counters' differences count, so the stack's start-up and warm-up do not.

Planning is tracked too (pg_stat_statements.track_planning): a prepared statement is planned once per
connection unless Postgres keeps choosing plans for the values at hand, and then it is planned on every call.
The report ends with the time spent planning and the statements planned most.

Then what the run wrote (`writes`): WAL bytes, records and full-page images a payment (pg_stat_wal), and
per table the rows inserted, updated and deleted a payment, with the share of updates that were HOT (the
new row version on the same page and no index entry written; pg_stat_all_tables). Postgres 15 publishes a
busy backend's table and WAL counts about once a second, so each snapshot misses each backend's last
second or so: the warm-up's tail counts and the run's tail does not, which roughly cancel.
"""

from __future__ import annotations

from typing import NamedTuple

import asyncpg

TOP = 15
PLANNED_TOP = 5
TEXT_MAX = 110

Counters = dict[tuple[int, int], "Statement"]


class Statement(NamedTuple):
    calls: int
    total_ms: float
    rows: int
    text: str
    plans: int = 0
    plan_ms: float = 0.0


class Snapshot(NamedTuple):
    statements: Counters
    writes: Writes


async def snapshot(database_url: str) -> Snapshot:
    """The statements' counters and the write counts, read on one connection."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT userid::bigint AS userid, queryid, calls, total_exec_time, rows, query, plans, "
                                "total_plan_time FROM pg_stat_statements WHERE queryid IS NOT NULL")
        writes = await _writes(conn)
    finally:
        await conn.close()
    return Snapshot({(row["userid"], row["queryid"]): Statement(row["calls"], row["total_exec_time"], row["rows"],
                                                                 row["query"], row["plans"], row["total_plan_time"])
                     for row in rows}, writes)


def full_report(before: Snapshot, after: Snapshot, payments: int) -> list[str]:
    """What the bench prints: the statements and their planning, then the writes."""
    return (report(difference(before.statements, after.statements), payments)
            + writes_report(before.writes, after.writes, payments))


def difference(before: Counters, after: Counters) -> list[Statement]:
    """The statements run between the two snapshots, most time first."""
    ran = []
    for key, now in after.items():
        then = before.get(key, Statement(0, 0.0, 0, now.text))
        if now.calls > then.calls:
            ran.append(Statement(now.calls - then.calls, now.total_ms - then.total_ms, now.rows - then.rows,
                                 now.text, now.plans - then.plans, now.plan_ms - then.plan_ms))
    return sorted(ran, key=lambda statement: -statement.total_ms)


def report(ran: list[Statement], payments: int, top: int = TOP) -> list[str]:
    total_ms = sum(statement.total_ms for statement in ran)
    lines = [f"Postgres statements during the run: {len(ran)} kinds, {sum(s.calls for s in ran):,} calls, "
             f"{total_ms / 1000:.1f} s executing ({_per_payment_us(total_ms, payments):.0f} µs per payment)",
             f"  {'calls/payment':>13} {'µs/call':>8} {'µs/payment':>10} {'share':>6}  statement"]
    for statement in ran[:top]:
        calls = statement.calls / payments if payments else 0.0
        mean_us = statement.total_ms * 1000 / statement.calls
        us_per_payment = _per_payment_us(statement.total_ms, payments)
        share = statement.total_ms / total_ms if total_ms else 0.0
        lines.append(f"  {calls:13.2f} {mean_us:8.0f} {us_per_payment:10.0f} {share:6.1%}  {_one_line(statement.text)}")
    return lines + planning(ran, payments)


def planning(ran: list[Statement], payments: int, top: int = PLANNED_TOP) -> list[str]:
    """The time spent planning, and the statements that took the most of it, each with plans against calls."""
    plan_ms = sum(statement.plan_ms for statement in ran)
    lines = [f"Planning: {sum(s.plans for s in ran):,} plans, {plan_ms / 1000:.1f} s "
             f"({_per_payment_us(plan_ms, payments):.0f} µs per payment)",
             f"  {'plans':>8} {'calls':>8} {'µs/plan':>8} {'µs/payment':>10}  statement"]
    for statement in sorted(ran, key=lambda statement: -statement.plan_ms)[:top]:
        if not statement.plans:
            break
        mean_us = statement.plan_ms * 1000 / statement.plans
        us_per_payment = _per_payment_us(statement.plan_ms, payments)
        lines.append(f"  {statement.plans:8,} {statement.calls:8,} {mean_us:8.0f} {us_per_payment:10.0f}  "
                     f"{_one_line(statement.text)}")
    return lines


class TableWrites(NamedTuple):
    inserted: int
    updated: int
    hot: int
    deleted: int


class Writes(NamedTuple):
    wal_bytes: int
    wal_records: int
    wal_fpi: int
    tables: dict[str, TableWrites]


async def _writes(conn: asyncpg.Connection) -> Writes:
    wal = await conn.fetchrow("SELECT wal_bytes::bigint AS wal_bytes, wal_records, wal_fpi FROM pg_stat_wal")
    rows = await conn.fetch("SELECT schemaname || '.' || relname AS name, n_tup_ins, n_tup_upd, n_tup_hot_upd, "
                            "n_tup_del FROM pg_stat_all_tables WHERE schemaname IN ('public', 'vault')")
    tables = {row["name"]: TableWrites(row["n_tup_ins"], row["n_tup_upd"], row["n_tup_hot_upd"], row["n_tup_del"])
              for row in rows}
    return Writes(wal["wal_bytes"], wal["wal_records"], wal["wal_fpi"], tables)


def writes_report(before: Writes, after: Writes, payments: int, top: int = TOP) -> list[str]:
    """WAL a payment, then the tables that wrote the most rows a payment, with their updates' HOT share."""
    per = 1 / payments if payments else 0.0
    lines = [f"Writes during the run: WAL {(after.wal_bytes - before.wal_bytes) * per / 1024:.1f} KB a payment, "
             f"{(after.wal_records - before.wal_records) * per:.1f} records, "
             f"{(after.wal_fpi - before.wal_fpi) * per:.2f} full-page images",
             f"  {'inserts/payment':>15} {'updates/payment':>15} {'HOT':>5} {'deletes/payment':>15}  table"]
    zero = TableWrites(0, 0, 0, 0)
    changed = [(name, _minus(table, before.tables.get(name, zero))) for name, table in after.tables.items()]
    changed.sort(key=lambda item: -(item[1].inserted + item[1].updated + item[1].deleted))
    for name, table in changed[:top]:
        if not table.inserted + table.updated + table.deleted:
            break
        hot = f"{table.hot / table.updated:.0%}" if table.updated else "-"
        lines.append(f"  {table.inserted * per:15.2f} {table.updated * per:15.2f} {hot:>5} "
                     f"{table.deleted * per:15.2f}  {name}")
    return lines


def _minus(now: TableWrites, then: TableWrites) -> TableWrites:
    return TableWrites(*(count - earlier for count, earlier in zip(now, then, strict=True)))


def _per_payment_us(ms: float, payments: int) -> float:
    return ms * 1000 / payments if payments else 0.0


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_MAX else flat[:TEXT_MAX - 3] + "..."
