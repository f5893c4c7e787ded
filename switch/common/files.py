"""Files a reader must never see half of (settlement files and their reports): written under a temporary
name of the writer's own in the same folder, fsynced, then renamed over the final name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temporary_for(path: Path) -> Path:
    """A name of its own per writer: two processes writing the same file do not trip over each other."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomically(path: Path, text: str, encoding: str = "utf-8") -> None:
    temporary = temporary_for(path)
    with open(temporary, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def publish(temporary: Path, path: Path) -> None:
    """Make a file written elsewhere under `temporary` durable, then give it its final name."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
