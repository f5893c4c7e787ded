"""Backtest: a candidate rule run over the signals recorded with a merchant's past payments, before it goes
live. Counts what it would have matched and, of those, how many later failed, were refunded or canceled
(the payments the rule would have been right to stop, or that were lost anyway)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from switch.fraud.rules import parse
from switch.fraud.signals import ATTRIBUTES, unpack_signals
from switch.store import fraud as fraud_store

PAYMENTS_MAX = 100_000


@dataclass(slots=True)
class Backtest:
    rule: str
    action: str
    payments: int = 0
    matched: int = 0
    matched_failed: int = 0
    matched_refunded: int = 0
    matched_canceled: int = 0
    decided_now: dict[str, int] = field(default_factory=dict)   # what the rules in force decided for the matched

    def lines(self) -> list[str]:
        share = f"{100 * self.matched / self.payments:.1f} %" if self.payments else "-"
        return [f"rule: {self.rule}",
                f"payments screened: {self.payments}",
                f"would {self.action}: {self.matched} ({share})",
                f"  of which failed: {self.matched_failed}, refunded: {self.matched_refunded}, "
                f"canceled: {self.matched_canceled}",
                "  decided then: " + (", ".join(f"{k} {v}" for k, v in sorted(self.decided_now.items())) or "-")]


async def backtest(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, rule_text: str, since: datetime,
                   limit: int = PAYMENTS_MAX) -> Backtest:
    """RuleError when the rule does not compile."""
    rule = parse(rule_text, ATTRIBUTES)
    lists = {name: frozenset(values) for name, values in (await fraud_store.get_lists(conn, merchant_id)).items()}
    result = Backtest(rule_text, rule.action.value)
    for row in await fraud_store.screened_payments(conn, merchant_id, since, limit):
        result.payments += 1
        fraud = row["fraud"] or {}
        if not rule.matches(unpack_signals(row["signals"]), lists):
            continue
        result.matched += 1
        result.matched_failed += row["status"] == "failed"
        result.matched_refunded += row["amount_refunded"] > 0
        result.matched_canceled += bool(row["canceled"])
        decision = str(fraud.get("decision", "?"))
        result.decided_now[decision] = result.decided_now.get(decision, 0) + 1
    return result
