"""A settlement import's report: one JSON and one CSV file per imported file under the reports directory,
each written to a temporary name, fsynced and renamed (a reader never sees part of one), and a summary
for the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

import asyncpg

from switch.settlement.imports import EXCEPTIONS, Imported
from switch.store import settlement as settlement_store


def _temporary(path: Path) -> Path:
    """A name of its own per writer: two imports of one file (two workers, say) write the same report."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomically(path: Path, text: str) -> None:
    temporary = _temporary(path)
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


async def write(conn: asyncpg.Connection, result: Imported, directory: Path) -> list[Path]:
    """The JSON summary (the lines that did not match) and the CSV of every line, streamed from Postgres."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    stem = f"{result.network}-file{result.file_id}"
    summary = {"file_id": result.file_id, "network": result.network, "file_name": result.file_name,
               "already_imported": result.already_imported, "superseded": result.superseded,
               "cut_off_at": result.cut_off_at.isoformat() if result.cut_off_at else None,
               "classes": dict(sorted(result.classes.items())), "exceptions": result.exceptions,
               "lines": result.lines}
    paths = [directory / f"{stem}.json", directory / f"{stem}.csv"]
    await asyncio.to_thread(write_atomically, paths[0], json.dumps(summary, indent=2, default=str) + "\n")
    temporary = _temporary(paths[1])
    await settlement_store.copy_matches(conn, result.file_id, str(temporary))
    await asyncio.to_thread(_fsync_and_rename, temporary, paths[1])
    return paths


def _fsync_and_rename(temporary: Path, path: Path) -> None:
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def summary_lines(result: Imported) -> list[str]:
    head = (f"{result.network} file {result.file_id} ({result.file_name}): "
            + ("already imported, unchanged" if result.already_imported else "imported")
            + (f", supersedes file {', '.join(map(str, result.superseded))}" if result.superseded else ""))
    counts = ", ".join(f"{name} {result.classes[name]}" for name in ("matched", *EXCEPTIONS) if result.classes[name])
    return [head, f"  lines: {counts or 'none'}", f"  exceptions: {result.exceptions}"]
