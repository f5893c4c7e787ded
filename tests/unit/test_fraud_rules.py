"""The fraud rule language: what parses, what does not (and where), precedence, types, missing values,
action priority, shadow rules, empty-list skipping, and a round trip of generated rules against a
reference evaluator."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.fraud.policy import RuleSpec, decide, default_policy, policy, risk_score
from switch.fraud.rules import Action, Kind, RuleError, parse
from switch.fraud.signals import ATTRIBUTES

ATTRS = {"amount": Kind.NUMBER, "country": Kind.TEXT, "email": Kind.TEXT, "testing": Kind.FLAG}


def test_a_rule_compiles_to_a_predicate() -> None:
    rule = parse("Block IF :amount: > 100 and :country: != 'us'", ATTRS)
    assert rule.action is Action.BLOCK
    assert rule.matches({"amount": 101, "country": "FR"}, {})
    assert not rule.matches({"amount": 101, "country": "US"}, {})       # text compares without case
    assert not rule.matches({"amount": 100, "country": "FR"}, {})


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    loose = parse("review if :amount: > 10 or :amount: < 0 and :testing:", ATTRS)
    assert loose.matches({"amount": 11, "testing": False}, {})           # a or (b and c)
    grouped = parse("review if (:amount: > 10 or :amount: < 0) and :testing:", ATTRS)
    assert not grouped.matches({"amount": 11, "testing": False}, {})
    assert parse("review if not :testing: and :amount: = 5", ATTRS).matches({"amount": 5, "testing": False}, {})


def test_a_missing_attribute_makes_a_comparison_false_even_not_equal() -> None:
    rule = parse("block if :email: != 'a@b.c'", ATTRS)
    assert not rule.matches({}, {})
    assert rule.matches({"email": "x@y.z"}, {})


def test_lists_match_lower_cased_values_and_not_in() -> None:
    lists = {"blocklist": frozenset({"bad@x.io"})}
    assert parse("block if :email: in @blocklist", ATTRS).matches({"email": "BAD@x.io"}, lists)
    assert parse("allow if :email: not in @blocklist", ATTRS).matches({"email": "ok@x.io"}, lists)
    assert not parse("block if :email: in @nolist", ATTRS).matches({"email": "bad@x.io"}, lists)


@pytest.mark.parametrize(("text", "position", "reason"), [
    ("deny if :amount: > 1", 0, "expected allow, block or review"),
    ("block :amount: > 1", 6, "expected 'if'"),
    ("block if :amont: > 1", 9, "unknown attribute :amont:"),
    ("block if :amount: > 'ten'", 20, "cannot compare number with text"),
    ("block if :country: < 'fr'", 19, "< compares numbers only"),
    ("block if (:amount: > 1", 22, "expected ')'"),
    ("block if :amount: > 1 :testing:", 22, "expected 'and', 'or' or the end"),
    ("block if :amount: ~ 1", 18, "unexpected '~ 1'"),
    ("block if :amount:", 17, "expected a comparison operator or 'in'"),
    ("block if :amount: in 5", 21, "expected a list"),
])
def test_a_bad_rule_names_what_is_wrong_and_where(text: str, position: int, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(text, ATTRS)
    assert caught.value.position == position, caught.value
    assert caught.value.reason.startswith(reason), caught.value


def test_allow_beats_block_beats_review_whatever_their_order() -> None:
    specs = [RuleSpec("review if :amount: > 1"), RuleSpec("block if :amount: > 2"), RuleSpec("allow if :amount: > 3")]
    rules = policy(1, specs, False, {})
    assert decide(rules, {"amount": 4}, {}).action is Action.ALLOW
    assert decide(rules, {"amount": 3}, {}).action is Action.BLOCK
    assert decide(rules, {"amount": 3}, {}).rule_index == 1
    assert decide(rules, {"amount": 2}, {}).action is Action.REVIEW
    verdict = decide(rules, {"amount": 1}, {})
    assert verdict.action is Action.ALLOW and verdict.rule is None


def test_a_shadow_rule_is_counted_but_never_decides() -> None:
    rules = policy(1, [RuleSpec("block if :amount: > 1", shadow=True)], False, {})
    verdict = decide(rules, {"amount": 5}, {})
    assert verdict.action is Action.ALLOW and verdict.shadow_matches == ("block if :amount: > 1",)
    assert verdict.shadow_indexes == (0,) and verdict.rule_index is None


def test_a_shadow_rule_after_an_allow_that_decided_is_still_counted() -> None:
    specs = [RuleSpec("allow if :amount: > 1"), RuleSpec("review if :amount: > 2", shadow=True)]
    verdict = decide(policy(1, specs, False, {}), {"amount": 5}, {})
    assert verdict.action is Action.ALLOW and verdict.rule_index == 0
    assert verdict.shadow_matches == ("review if :amount: > 2",) and verdict.shadow_indexes == (1,)


_ACTIONS = st.sampled_from(["allow", "block", "review"])
_RULE_SETS = st.lists(st.tuples(_ACTIONS, st.integers(0, 6), st.booleans()), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(_RULE_SETS, st.integers(0, 7))
def test_the_verdict_is_the_first_match_of_the_highest_action(rule_set: list[tuple[str, int, bool]],
                                                             amount: int) -> None:
    """Against a plain reading of the priority: of the live rules that match, the first allow, else the
    first block, else the first review; every matching shadow rule is listed, in the set's order."""
    specs = [RuleSpec(f"{action} if :amount: > {above}", shadow=shadow) for action, above, shadow in rule_set]
    verdict = decide(policy(1, specs, False, {}), {"amount": amount}, {})
    matching = [(index, action, shadow) for index, (action, above, shadow) in enumerate(rule_set) if amount > above]
    expected = next((index for wanted in ("allow", "block", "review")
                     for index, action, shadow in matching if action == wanted and not shadow), None)
    assert verdict.rule_index == expected
    assert verdict.action is (Action(rule_set[expected][0]) if expected is not None else Action.ALLOW)
    assert verdict.shadow_indexes == tuple(index for index, _, shadow in matching if shadow)


def test_three_terms_joined_stop_where_they_are_decided() -> None:
    every = parse("review if :amount: > 1 and :amount: < 5 and :amount: != 3", ATTRS)
    assert every.matches({"amount": 2}, {}) and not every.matches({"amount": 3}, {})
    assert not every.matches({"amount": 5}, {}) and not every.matches({}, {})
    some = parse("review if :amount: = 1 or :amount: = 3 or :testing:", ATTRS)
    assert some.matches({"amount": 3}, {}) and some.matches({"testing": True}, {})
    assert not some.matches({"amount": 2, "testing": False}, {})


def test_list_rules_are_skipped_while_their_lists_are_empty() -> None:
    empty = default_policy({})
    assert all(not rule.lists for rule, _, _ in empty.live)
    listed = default_policy({"blocklist": frozenset({"10.0.0.1"})})
    assert any("@blocklist" in rule.text for rule, _, _ in listed.live)
    assert decide(listed, {"ip_address": "10.0.0.1"}, listed.lists).action is Action.BLOCK


def test_the_default_rules_block_a_card_used_too_often_in_a_minute_or_an_hour() -> None:
    rules = default_policy({})
    assert decide(rules, {"card_velocity_1m": 6, "card_velocity_1h": 6}, {}).action is Action.BLOCK
    assert decide(rules, {"card_velocity_1m": 1, "card_velocity_1h": 11}, {}).action is Action.BLOCK
    assert decide(rules, {"card_velocity_1m": 5, "card_velocity_1h": 10}, {}).action is Action.ALLOW


def test_the_default_rules_compile_against_the_real_attributes() -> None:
    assert len(default_policy({}).rules) >= 8
    parse("block if :card_velocity_1h: > 5 and :card_country: != :merchant_country:", ATTRIBUTES)


def test_radar_test_cards_set_the_score_floor() -> None:
    assert risk_score({}, 99)[0] == 99
    assert risk_score({}, None) == (5, [])
    score, reasons = risk_score({"card_velocity_1h": 9, "ip_cards_1h": 6}, None)
    assert score == 5 + 40 + 40 and reasons == ["card_velocity_1h", "ip_cards_1h"]


# A round trip: random expression trees, written out as rule text, parsed, and evaluated against a
# reference evaluator over random signals.
_OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_leaf = st.tuples(st.just("cmp"), st.sampled_from(sorted(_OPS)), st.integers(-5, 5))
_tree = st.recursive(_leaf, lambda inner: st.one_of(
    st.tuples(st.just("and"), inner, inner), st.tuples(st.just("or"), inner, inner), st.tuples(st.just("not"), inner)),
    max_leaves=8)


def _text(node: tuple) -> str:  # type: ignore[type-arg]
    if node[0] == "cmp":
        return f":amount: {node[1]} {node[2]}"
    if node[0] == "not":
        return f"not ({_text(node[1])})"
    return f"({_text(node[1])} {node[0]} {_text(node[2])})"


def _evaluate(node: tuple, amount: int | None) -> bool:  # type: ignore[type-arg]
    if node[0] == "cmp":
        return amount is not None and _OPS[node[1]](amount, node[2])
    if node[0] == "not":
        return not _evaluate(node[1], amount)
    left, right = _evaluate(node[1], amount), _evaluate(node[2], amount)
    return left and right if node[0] == "and" else left or right


@settings(max_examples=300, deadline=None)
@given(_tree, st.one_of(st.none(), st.integers(-6, 6)))
def test_generated_rules_evaluate_as_written(tree: tuple, amount: int | None) -> None:  # type: ignore[type-arg]
    rule = parse(f"review if {_text(tree)}", ATTRS)
    signals = {} if amount is None else {"amount": amount}
    assert rule.matches(signals, {}) == _evaluate(tree, amount)


def test_stored_signals_cover_every_attribute_and_read_back() -> None:
    from switch.fraud.signals import ATTRIBUTES, STORED_ORDERS, STORED_VERSION, pack_signals, unpack_signals

    # A new attribute needs a new stored version (old rows keep their order): this fails until it has one.
    assert set(STORED_ORDERS[STORED_VERSION]) == set(ATTRIBUTES)
    signals = {"amount": 1999, "amount_usd": 19.99, "currency": "usd", "is_cross_border": False,
               "card_testing": True, "card_velocity_1h": 3, "email": "a@example.com"}
    stored = pack_signals(signals)
    assert unpack_signals(stored) == signals and len(stored) < 120
    assert unpack_signals(None) == {}
