"""A merchant's screening policy: its rule set (a version of rules, each live or in shadow mode), its lists,
and whether a screen that cannot run fails open or closed; the risk score; and the decision.

Rules run by action priority, as Radar's do: the first allow rule that matches allows the payment (nothing
else is checked), else the first block rule blocks it, else the first review rule sends it to review.
Shadow rules are evaluated and counted but never decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from switch.fraud.rules import Action, Lists, Rule, RuleError, Signals, parse
from switch.fraud.signals import ATTRIBUTES

RULES_MAX = 50

DEFAULT_RULES = (
    "allow if :card_fingerprint: in @allowlist or :email: in @allowlist or :ip_address: in @allowlist",
    "block if :card_fingerprint: in @blocklist or :card_bin: in @blocklist or :ip_address: in @blocklist",
    "block if :email: in @blocklist or :email_domain: in @blocklist or :card_country: in @blocklist",
    "block if :risk_level: = 'highest'",
    "block if :ip_cards_1h: > 4",
    "block if :card_testing: and :ip_cards_1h: > 1",
    "block if :card_velocity_1m: > 5",
    "block if :card_velocity_1h: > 10",
    "review if :risk_level: = 'elevated'",
    "review if :amount_usd: > 5000 and :is_cross_border:",
)

# Radar's test cards: always blocked, highest risk, elevated risk.
TEST_CARD_SCORES = {"4100000000000019": 99, "4000000000004954": 85, "4000000000009235": 70}
ELEVATED, HIGHEST = 65, 75


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    rule: str
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    rule: str | None                          # the text of the rule that decided, or None
    shadow_matches: tuple[str, ...] = ()      # shadow rules that would have acted
    rule_index: int | None = None             # the deciding rule's place in its set
    shadow_indexes: tuple[int, ...] = ()


_ALLOWED = Verdict(Action.ALLOW, None)
_PRIORITY = {Action.ALLOW: 0, Action.BLOCK: 1, Action.REVIEW: 2}


@dataclass(frozen=True, slots=True)
class Policy:
    version: int                      # 0: the defaults
    rules: tuple[Rule, ...]
    shadow: tuple[bool, ...]
    specs: tuple[RuleSpec, ...]
    fail_closed: bool = False
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The rules worth running, with their shadow flag: a rule that only tests lists that are empty is
    # skipped (most merchants' lists are empty, and the list rules come first).
    live: tuple[tuple[Rule, bool, int], ...] = ()      # (rule, shadow, its index in the set)
    # The live rules that act, in the order they decide (allow, then block, then review; in each, the set's
    # order), each with the verdict it gives: the first that matches is the verdict.
    acting: tuple[tuple[Rule, Verdict], ...] = ()
    shadows: tuple[tuple[Rule, int], ...] = ()          # the live shadow rules, with their index

    def __post_init__(self) -> None:
        live = tuple((rule, shadow, index) for index, (rule, shadow) in enumerate(zip(self.rules, self.shadow,
                                                                                      strict=True))
                     if not (rule.needs_lists and not any(self.lists.get(name) for name in rule.lists)))
        acting = sorted(((rule, index) for rule, shadow, index in live if not shadow),
                        key=lambda ranked: (_PRIORITY[ranked[0].action], ranked[1]))
        object.__setattr__(self, "live", live)
        object.__setattr__(self, "acting", tuple((rule, Verdict(rule.action, rule.text, rule_index=index))
                                                 for rule, index in acting))
        object.__setattr__(self, "shadows", tuple((rule, index) for rule, shadow, index in live if shadow))


def compile_rules(specs: list[RuleSpec]) -> tuple[Rule, ...]:
    """Every rule parsed; RuleError carries the failing rule's index in `index`."""
    if len(specs) > RULES_MAX:
        raise RuleError(f"a rule set holds at most {RULES_MAX} rules", 0)
    compiled = []
    for index, spec in enumerate(specs):
        try:
            compiled.append(parse(spec.rule, ATTRIBUTES))
        except RuleError as error:
            error.index = index            # type: ignore[attr-defined]
            raise
    return tuple(compiled)


def policy(version: int, specs: list[RuleSpec], fail_closed: bool, lists: Mapping[str, frozenset[str]]) -> Policy:
    return Policy(version, compile_rules(specs), tuple(spec.shadow for spec in specs), tuple(specs), fail_closed,
                  lists)


DEFAULT_SPECS = [RuleSpec(rule) for rule in DEFAULT_RULES]
DEFAULT_COMPILED = compile_rules(DEFAULT_SPECS)


def default_policy(lists: Mapping[str, frozenset[str]]) -> Policy:
    return Policy(0, DEFAULT_COMPILED, (False,) * len(DEFAULT_COMPILED), tuple(DEFAULT_SPECS), False, lists)


def risk_score(signals: Signals, test_card_score: int | None) -> tuple[int, list[str]]:
    """0-99 from velocity, consistency and amount signals (each one that adds is a reason), as Adyen's
    RevenueProtect sums its checks; a Radar test card sets its own floor. Written straight, not as a
    table: it runs for every payment, and most add nothing. The screen sets these signals itself, as
    numbers (or None, or leaves them out); a value of another type counts as 0, as a missing one does
    (every threshold is above 0), so a missing one is read as None without a default to pass."""
    get, numbers = signals.get, _NUMBERS
    score, reasons = 5, []
    card_1h = get("card_velocity_1h")
    if type(card_1h) in numbers and card_1h > 3:  # type: ignore[operator]
        score += int(min(40, 8 * (card_1h - 3)))  # type: ignore[operator]
        reasons.append("card_velocity_1h")
    declines = get("card_declines_1h")
    if type(declines) in numbers and declines > 1:  # type: ignore[operator]
        score += int(min(20, 10 * (declines - 1)))  # type: ignore[operator]
        reasons.append("card_declines_1h")
    cards = get("ip_cards_1h")
    if type(cards) in numbers and cards > 2:  # type: ignore[operator]
        score += int(min(40, 10 * (cards - 2)))  # type: ignore[operator]
        reasons.append("ip_cards_1h")
    for name, above, points in _THRESHOLDS:
        value = get(name)
        if type(value) in numbers and value > above:  # type: ignore[operator]
            score += points
            reasons.append(name)
    amount = get("amount_usd")
    amount_known = type(amount) in numbers
    if amount_known and amount > 1000:  # type: ignore[operator]
        score += 20 if amount > 5000 else 10  # type: ignore[operator]
        reasons.append("amount_usd")
    if get("is_cross_border"):
        score += 10
        reasons.append("is_cross_border")
    if get("card_funding") == "prepaid":
        score += 5
        reasons.append("card_funding")
    if get("card_testing") and (not amount_known or amount < 10):  # type: ignore[operator]
        score += 25
        reasons.append("card_testing")
    if test_card_score is not None and test_card_score > score:
        score = test_card_score
        reasons.append("test_card")
    return (score if score < 99 else 99), reasons


_THRESHOLDS = (("ip_velocity_1m", 10, 10), ("email_velocity_1h", 5, 10), ("card_amount_usd_24h", 5000, 15))
_NUMBERS = frozenset((int, float))


def level_of(score: int) -> str:
    return "highest" if score >= HIGHEST else "elevated" if score >= ELEVATED else "normal"


def decide(policy: Policy, signals: Signals, lists: Lists) -> Verdict:
    """The first acting rule that matches, in priority order (Policy.acting); every shadow rule is evaluated
    whatever decided, so a shadow rule's count does not depend on the live rules."""
    verdict = _ALLOWED
    for rule, its_verdict in policy.acting:
        if rule.predicate(signals, lists):
            verdict = its_verdict
            break
    if policy.shadows:
        matched = [(rule.text, index) for rule, index in policy.shadows if rule.predicate(signals, lists)]
        if matched:
            verdict = Verdict(verdict.action, verdict.rule, tuple(text for text, _ in matched), verdict.rule_index,
                              tuple(index for _, index in matched))
    return verdict
