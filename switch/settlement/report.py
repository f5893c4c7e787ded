"""A settlement import's report: one JSON and one CSV file per imported file under the reports directory,
each written to a temporary name, fsynced and renamed (a reader never sees part of one), and a summary
for the terminal."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from switch.settlement.imports import EXCEPTIONS, Imported

COLUMNS = ("line_no", "class", "rrn", "transaction_type", "payment_id", "refund_id", "ours_amount_minor",
           "theirs_amount_minor", "currency")


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write(result: Imported, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{result.network}-file{result.file_id}"
    summary = {"file_id": result.file_id, "network": result.network, "file_name": result.file_name,
               "already_imported": result.already_imported, "superseded": result.superseded,
               "cut_off_at": result.cut_off_at.isoformat() if result.cut_off_at else None,
               "classes": dict(sorted(result.classes.items())), "exceptions": result.exceptions,
               "lines": [line for line in result.lines if line["class"] != "matched"]}
    table = io.StringIO()
    writer = csv.DictWriter(table, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.lines)
    paths = [directory / f"{stem}.json", directory / f"{stem}.csv"]
    write_atomically(paths[0], json.dumps(summary, indent=2, default=str) + "\n")
    write_atomically(paths[1], table.getvalue())
    return paths


def summary_lines(result: Imported) -> list[str]:
    head = (f"{result.network} file {result.file_id} ({result.file_name}): "
            + ("already imported, unchanged" if result.already_imported else "imported")
            + (f", supersedes file {', '.join(map(str, result.superseded))}" if result.superseded else ""))
    counts = ", ".join(f"{name} {result.classes[name]}" for name in ("matched", *EXCEPTIONS) if result.classes[name])
    return [head, f"  lines: {counts or 'none'}", f"  exceptions: {result.exceptions}"]
