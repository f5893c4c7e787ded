"""The fraud screen's Prometheus metrics: decisions, the rules' actions, shadow matches, fail-opens, card
testing and the screen's time. Labels are fixed sets (decision, risk level), never a merchant or a rule."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter

from switch.store.records import FraudRecord

decisions = Counter("switch_fraud_decisions_total", "Fraud screen decisions", ["decision", "risk_level"])
shadow_matches = Counter("switch_fraud_shadow_matches_total", "Shadow rules that would have acted")
# Which rule acted: its place in its set (at most RULES_MAX) and whether the set is the defaults, so the
# label values stay a small fixed set whatever the merchants write.
rule_matches = Counter("switch_fraud_rule_matches_total", "Rules that matched, live (acted) or in shadow mode",
                       ["rule_set", "rule", "mode"])
unavailable = Counter("switch_fraud_unavailable_total",
                      "Screens without their velocity counters (Redis away or late): failed open or closed")
card_testing_started = Counter("switch_fraud_card_testing_started_total",
                               "Card-testing cool-offs started at a merchant")
# A sum, not a histogram: one value to update per payment (the mean is this over the decisions' total).
screen_seconds = Counter("switch_fraud_screen_seconds", "Time in the fraud screen, waiting for the counters included")


_decision_children = {(decision, level): decisions.labels(decision, level)
                      for decision in ("allow", "review", "block") for level in ("normal", "elevated", "highest")}


def rule_matched(default_set: bool, index: int, shadow: bool) -> None:
    rule_matches.labels("default" if default_set else "merchant", str(index), "shadow" if shadow else "live").inc()


class _Pending:
    """Decisions and screen time added up in plain numbers and handed to prometheus-client at most once
    a second: in multiprocess mode each increment is a locked write to a shared file, two per payment."""

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.seconds = 0.0
        self.flush_scheduled = False

    def add(self, decision: str, level: str, seconds: float) -> None:
        key = (decision, level)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self.seconds += seconds
        if not self.flush_scheduled:
            self.flush_scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)
            except RuntimeError:                 # no loop (a tool, a test): at once
                self.flush()

    def flush(self) -> None:
        self.flush_scheduled = False
        pending, self.decisions = self.decisions, {}
        for key, count in pending.items():
            _decision_children[key].inc(count)
        if self.seconds:
            screen_seconds.inc(self.seconds)
            self.seconds = 0.0


FLUSH_INTERVAL_S = 1.0
pending = _Pending()


def observe(record: FraudRecord, started: float) -> None:
    pending.add(record.decision, record.risk_level, time.perf_counter() - started)
