"""The settlement job every worker runs when SWITCH_SETTLEMENT_DIR is set: it looks for the networks'
files in that folder (`<network>-*.csv`, as the networks' transfers drop them) and imports each new one.

Safe on several workers at once: a file already in `settlement_files` (by name) is skipped without being
read, and two workers that meet the same new file queue on the network's advisory lock, where the second
finds it imported (by content). A file that is refused, or a pass that fails, is logged and tried again
on the next pass; it never stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from switch.settlement import report
from switch.settlement.imports import MISSING_AFTER_DAYS, ImportRefused, import_file
from switch.store import settlement as settlement_store

log = logging.getLogger(__name__)

FILES_PER_PASS_MAX = 100


async def import_new(pool: asyncpg.Pool, directory: Path, reports: Path, networks: list[str],
                     missing_after_days: float = MISSING_AFTER_DAYS) -> int:
    """Import the files of `networks` in `directory` that were never imported; how many were."""
    names = sorted(await asyncio.to_thread(lambda: [path.name for path in directory.glob("*.csv")]))
    known = await settlement_store.known_file_names(pool, names)
    imported = 0
    for name in [name for name in names if name not in known][:FILES_PER_PASS_MAX]:
        network = name.split("-", 1)[0]
        if network not in networks:
            continue
        async with pool.acquire() as conn:
            try:
                result = await import_file(conn, network, directory / name, missing_after_days)
            except ImportRefused as refused:
                log.error("settlement file %s refused: %s", name, refused)
                continue
            await report.write(conn, result, reports)
        if not result.already_imported:
            imported += 1
            log.info("settlement file %s imported: %s", name, "; ".join(report.summary_lines(result)[1:]))
    return imported


async def run(pool: asyncpg.Pool, directory: Path, reports: Path, networks: list[str], interval_s: float,
              missing_after_days: float = MISSING_AFTER_DAYS) -> None:
    while True:
        try:
            await import_new(pool, directory, reports, networks, missing_after_days)
        except Exception as error:  # noqa: BLE001 - a failed pass is tried again next interval
            log.warning("settlement pass failed: %s", error.__class__.__name__)
        await asyncio.sleep(interval_s)
