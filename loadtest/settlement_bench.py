"""Settlement bench: a network file of N lines (1,000,000 by default) imported and matched against as many
captured payments, on a throwaway Postgres. Prints one line:

    SETTLEMENT_BENCH lines=<n> seconds=<s> lines_per_s=<x> peak_rss_mb=<m> matched=<k>

The payments are written straight into Postgres by one generate_series statement (the bench measures the
import, not the payment path); every line of the file settles one of them. Peak RSS is this process's
(the import runs in it); Postgres's own memory is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from loadtest.stacks import run_on_stack
from switch.settlement.imports import HEADER

SEED_PAYMENTS = """
INSERT INTO merchants (id, name) VALUES ('acct_settlementbench', 'settlement bench') ON CONFLICT DO NOTHING;
INSERT INTO payments (id, merchant_id, status, amount, currency, capture_method, amount_capturable,
                      amount_received, card_token, card_brand, card_last4, card_exp_month, card_exp_year, network,
                      terminal_id, stan, rrn, transmitted_at, deadline_at)
SELECT 'pay_bench' || lpad(n::text, 13, '0'), 'acct_settlementbench', 'succeeded', 1000 + n % 5000, 'usd',
       'automatic', 0, 1000 + n % 5000, 'tok_bench', 'visa', '4242', 12, 2031, 'visa', 'BENCH001',
       lpad((n % 1000000)::text, 6, '0'), lpad(n::text, 12, '0'), '1201000000', now()
FROM generate_series(1, {lines}) AS n"""


def write_file(path: Path, lines: int) -> None:
    """One visa file: a capture line per seeded payment, and its trailer."""
    debit = 0
    with open(path, "w", encoding="ascii") as out:
        out.write(HEADER + "\n")
        for n in range(1, lines + 1):
            amount = 1000 + n % 5000
            debit += amount
            out.write(f"D,visa,{n:012d},{n % 1000000:06d},BENCH001,A{n % 100000:05d},sale,{amount},840,"
                      f"2030-05-06,2030-05-07,{(amount * 150 + 5000) // 10000 + 10}\n")
        out.write(f"T,visa,840,{lines},{debit},0,{debit},0,2030-05-07,2030-05-07T00:00:00Z\n")


async def bench(database_url: str, path: Path, lines: int) -> str:
    from switch.settlement.imports import import_file
    from switch.store.pool import connect

    conn = await connect(database_url)
    try:
        await conn.execute(SEED_PAYMENTS.format(lines=lines))
        await conn.execute("ANALYZE payments")          # as autovacuum keeps a live table
        started = time.monotonic()
        result = await import_file(conn, "visa", path)
        elapsed = time.monotonic() - started
    finally:
        await conn.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"SETTLEMENT_BENCH lines={lines} seconds={elapsed:.1f} lines_per_s={lines / elapsed:.0f} "
            f"peak_rss_mb={peak_mb:.0f} matched={result.classes['matched']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.settlement_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from switch.dev.devstack import Stack, new_run_dir

    work = Path(tempfile.mkdtemp(prefix="settlement-bench-"))

    def run(stack: Stack) -> int:
        path = work / "visa-bench.csv"
        write_file(path, args.lines)
        print(f"importing {args.lines} lines ...", flush=True)
        print(asyncio.run(bench(stack.database_url, path, args.lines)), flush=True)
        return 0

    try:
        return run_on_stack("settlement-bench", Stack(run_dir=new_run_dir()), lambda s: s.start_postgres(), run)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
