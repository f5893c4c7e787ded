"""All of the switch's SQL lives in switch/store: a statement or a driver call anywhere else fails here."""

from __future__ import annotations

import re
from pathlib import Path

SWITCH = Path(__file__).resolve().parents[2] / "switch"
STORE = SWITCH / "store"
# Statements as they appear in string literals, and the asyncpg calls that run them.
SQL = re.compile(r"\b(SELECT\s+\S|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|nextval\()")
DRIVER_CALL = re.compile(r"\b(conn|connection|pool|db)\.(fetch|fetchrow|fetchval|execute|executemany|copy_\w+)\(")


def offenders() -> list[str]:
    found = []
    for path in sorted(SWITCH.rglob("*.py")):
        if STORE in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line) or DRIVER_CALL.search(line):
                found.append(f"{path.relative_to(SWITCH.parent)}:{number}: {line.strip()}")
    return found


def test_no_sql_outside_the_store() -> None:
    assert offenders() == []


def test_the_check_sees_sql_and_driver_calls() -> None:
    assert SQL.search('"SELECT id FROM payments WHERE id = $1"')
    assert SQL.search("UPDATE payments SET status = $2")
    assert DRIVER_CALL.search("await conn.fetchval(query)")
    assert not SQL.search("Select the network for the card's brand")
    assert not DRIVER_CALL.search("await self.commands.execute('SET', name)")   # a Redis pipeline, not SQL
