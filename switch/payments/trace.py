"""Trace numbers for ISO 8583 messages: terminal id (41), STAN (11) and RRN (37).

A worker reserves blocks of 1,000 counters from a Postgres sequence (one round trip per 1,000 payments).
See the comment on ``trace_blocks`` in schema.sql for how a counter maps to the three numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from switch.store.trace import next_trace_block

BLOCK_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Trace:
    terminal_id: str      # field 41, 8 characters
    stan: str             # field 11, 6 digits, never 000000
    rrn: str              # field 37, 12 digits


def trace_for(counter: int) -> Trace:
    return Trace(terminal_id=f"SW{(counter // 1_000_000) % 1_000_000:06d}", stan=f"{counter % 1_000_000:06d}",
                 rrn=f"{counter % 1_000_000_000_000:012d}")


class TraceAllocator:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.next_counter = 0
        self.block_end = 0

    async def next(self) -> Trace:
        while True:
            if self.next_counter >= self.block_end:
                block = await next_trace_block(self.pool)
                self.next_counter, self.block_end = block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE
            counter = self.next_counter
            self.next_counter += 1
            if counter % 1_000_000:          # STAN 000000 is not a valid trace number
                return trace_for(counter)
