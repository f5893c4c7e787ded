"""Settlement drill: a day of traffic on the real stack (authorizations captured in full or in part, sales,
refunds, voids), a cut-off at which the simulator plants a seeded random set of discrepancies, and the
import. Prints one line:

    SETTLEMENT planted=<n> found=<n> false_exceptions=<k> unmatched_lines=<u> ledger_ok=<true|false>

`found` counts planted discrepancies reported as their class; `false_exceptions` are exceptions nobody
planted; `unmatched_lines` every line that did not match. Every kind the simulator plants: drop (found as
missing_in_theirs: the import runs with no grace, as on the day the grace ends), amount, duplicate,
unknown, reversed and currency. Bounded: a fixed number of payments, at most DRILL_TIMEOUT_S.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.fraud_drill import luhn_card
from loadtest.httpclient import Client
from loadtest.stacks import run_on_stack

PAYMENTS = 120
KINDS = {"drop": "missing_in_theirs", "amount": "amount_mismatch", "duplicate": "duplicate_in_file",
         "unknown": "missing_in_ours",
         "reversed": "settled_after_reversal", "currency": "currency_mismatch"}
DRILL_TIMEOUT_S = 120.0


def _body(amount: int, capture: str) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "capture_method": capture,
            "payment_method": {"card": {"number": luhn_card("4571"), "exp_month": 11, "exp_year": 2031}}}


async def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.request("POST", path, body, idempotency_key=secrets.token_hex(12))
    if answer.status != 200:
        raise RuntimeError(f"{path}: {answer.status} {answer.body[:200]!r}")
    return answer.json()


async def _one(client: Client, rng: random.Random) -> None:
    """One customer's day: a sale (sometimes refunded), or an authorization captured or voided."""
    amount = rng.randint(500, 20_000)
    if rng.random() < 0.5:
        sale = await _post(client, "/v1/payments", _body(amount, "automatic"))
        if rng.random() < 0.3:
            await _post(client, "/v1/refunds", {"payment": sale["id"], "amount": rng.randint(100, amount)})
        return
    held = await _post(client, "/v1/payments", _body(amount, "manual"))
    if rng.random() < 0.2:
        await _post(client, f"/v1/payments/{held['id']}/cancel", {})
    else:
        await _post(client, f"/v1/payments/{held['id']}/capture", {"amount_to_capture": rng.randint(100, amount)})


def _control(url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())


async def drill(stack: Any, seed: int) -> int:
    from switch.ledger.check import check as check_ledger
    from switch.settlement.imports import import_file
    from switch.store.pool import connect

    rng = random.Random(seed)
    client = Client(stack.switch_url, stack.api_key)
    try:
        async with asyncio.timeout(DRILL_TIMEOUT_S):
            for _ in range(PAYMENTS // 10):
                await asyncio.gather(*(_one(client, rng) for _ in range(10)))
    finally:
        await client.close()
    conn = await connect(stack.database_url)
    try:
        for _ in range(200):                     # capture advices and reversals reach the network first
            if not await conn.fetchval("SELECT count(*) FROM network_outbox WHERE acknowledged_at IS NULL"):
                break
            await asyncio.sleep(0.05)
        plan = {kind: rng.randint(1, 3) for kind in KINDS}
        cut = await asyncio.to_thread(_control, stack.simulator_control_url, "/settlement",
                                      {"plant": plan, "seed": seed})
        planted = {(item["rrn"], KINDS[item["kind"]]) for item in cut["planted"] if item["network"] == "visa"}
        visa = next(Path(name) for name in cut["files"] if Path(name).name.startswith("visa-"))
        result = await import_file(conn, "visa", visa, missing_after_days=0)
        reported = {(str(line["rrn"]), str(line["class"])) for line in result.lines}
        ledger_ok = not await check_ledger(conn)
    finally:
        await conn.close()
    found = len(planted & reported)
    print(f"planted {sorted(plan.items())} on {len(planted)} lines; classes {dict(result.classes)}")
    print(f"SETTLEMENT planted={len(planted)} found={found} false_exceptions={len(reported - planted)} "
          f"unmatched_lines={len(result.lines)} ledger_ok={str(ledger_ok).lower()}", flush=True)
    return 0 if found == len(planted) and reported == planted and ledger_ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.settlement_drill", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    import uvloop

    from switch.dev.devstack import Stack, new_run_dir

    stack = Stack(run_dir=new_run_dir(), address_rate_limit_per_s=1_000_000, merchant_rate_limit_per_s=1_000_000,
                  fraud_rules="lists")
    return run_on_stack("settlement-drill", stack, lambda s: s.start_all(workers=1),
                        lambda s: int(uvloop.run(drill(s, args.seed))))

if __name__ == "__main__":
    sys.exit(main())
