"""A settlement import's report: one JSON and one CSV file per imported file under the reports directory,
each written to a temporary name, fsynced and renamed (a reader never sees part of one), and a summary
for the terminal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from switch.common.files import publish, temporary_for, write_atomically
from switch.settlement.imports import EXCEPTIONS, Imported
from switch.store import settlement as settlement_store


async def write(conn: asyncpg.Connection, result: Imported, directory: Path) -> list[Path]:
    """The JSON summary (the lines that did not match) and the CSV of every line, streamed from Postgres."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    stem = f"{result.network}-file{result.file_id}"
    summary = {"file_id": result.file_id, "network": result.network, "file_name": result.file_name,
               "already_imported": result.already_imported, "superseded": result.superseded,
               "cut_off_at": result.cut_off_at.isoformat() if result.cut_off_at else None,
               "classes": dict(sorted(result.classes.items())), "exceptions": result.exceptions,
               "awaiting_settlement": result.awaiting, "lines": result.lines}
    paths = [directory / f"{stem}.json", directory / f"{stem}.csv"]
    await asyncio.to_thread(write_atomically, paths[0], json.dumps(summary, indent=2, default=str) + "\n")
    temporary = temporary_for(paths[1])
    await settlement_store.copy_matches(conn, result.file_id, str(temporary))
    await asyncio.to_thread(publish, temporary, paths[1])
    return paths


def summary_lines(result: Imported) -> list[str]:
    head = (f"{result.network} file {result.file_id} ({result.file_name}): "
            + ("already imported, unchanged" if result.already_imported else "imported")
            + (f", supersedes file {', '.join(map(str, result.superseded))}" if result.superseded else ""))
    counts = ", ".join(f"{name} {result.classes[name]}" for name in ("matched", *EXCEPTIONS) if result.classes[name])
    awaiting = f"  awaiting settlement (within the grace): {result.awaiting}" if result.awaiting else None
    return [head, f"  lines: {counts or 'none'}", *([awaiting] if awaiting else []),
            f"  exceptions: {result.exceptions}"]
