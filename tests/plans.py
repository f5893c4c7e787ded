"""Reading a prepared statement's generic plan in tests: the plan a connection keeps once it has run the
statement a few times, whatever the values of a later call."""

from __future__ import annotations

import asyncpg


async def generic_plan(conn: asyncpg.Connection, query: str, arguments: int, placeholder: str = "NULL") -> str:
    """EXPLAIN of `query`'s generic plan on `conn`, each of its `arguments` given as `placeholder` (an array
    parameter needs "'{}'")."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE plan_probe AS {query}")
    try:
        rows = await conn.fetch(f"EXPLAIN EXECUTE plan_probe({', '.join([placeholder] * arguments)})")
    finally:
        await conn.execute("DEALLOCATE plan_probe")
        await conn.execute("RESET plan_cache_mode")
    return "\n".join(row[0] for row in rows)


def scan_conditions(plan: str, scanned: str) -> list[str]:
    """How a plan finds the rows of its scan of `scanned` (e.g. "on payments p"): the conditions of that scan
    and of the scans under it (a bitmap scan's index scan); none when it reads them all."""
    lines = plan.splitlines()
    scan = next((n for n, line in enumerate(lines) if scanned in line and "Scan" in line), None)
    assert scan is not None, f"no scan {scanned!r} in the plan:\n{plan}"
    depth = len(lines[scan]) - len(lines[scan].lstrip())
    found = []
    for line in lines[scan + 1:]:
        if len(line) - len(line.lstrip()) <= depth:
            break                                   # past the scan and what runs under it
        if line.strip().startswith(("Index Cond", "Recheck Cond", "Filter")):
            found.append(line.strip())
    return found
