"""The fraud screen's Prometheus metrics: decisions, the rules' actions, shadow matches, fail-opens, card
testing and the screen's time. Labels are fixed sets (decision, risk level), never a merchant or a rule."""

from __future__ import annotations

import time

from prometheus_client import Counter

from switch.common.metrics import FlushedCounts
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


def rule_matched(default_set: bool, index: int, shadow: bool) -> None:
    rule_matches.labels("default" if default_set else "merchant", str(index), "shadow" if shadow else "live").inc()


# Decisions and screen time go to prometheus-client at most once a second (two increments per payment).
_decisions = FlushedCounts(decisions, [(decision, level) for decision in ("allow", "review", "block")
                                       for level in ("normal", "elevated", "highest")])
_screen_seconds = FlushedCounts(screen_seconds)


def observe(record: FraudRecord, started: float) -> None:
    _decisions.add((record.decision, record.risk_level))
    _screen_seconds.add((), time.perf_counter() - started)
