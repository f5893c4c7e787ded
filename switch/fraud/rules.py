"""The fraud rule language, in the spirit of Stripe Radar's: parsed once per rule set version and compiled
into plain Python closures; merchant text is never evaluated. Every payment runs its merchant's rules, so
the common shapes get closures of their own: an attribute against a constant reads one signal and calls
one C comparison (0.1 µs, where reading both sides through closures took 0.4), and `and` / `or` of two
terms is one boolean expression (a generator over the terms took 0.3 µs more).

    rule       := action "if" expression
    action     := "allow" | "block" | "review"
    expression := conjunction ("or" conjunction)*
    conjunction:= negation ("and" negation)*
    negation   := "not" negation | "(" expression ")" | comparison
    comparison := operand [operator operand | ["not"] "in" list]
    operand    := attribute | number | string
    attribute  := ":" name ":"            e.g. :amount_usd:, :card_velocity_1h:
    list       := "@" name                e.g. @blocklist
    operator   := "=" | "!=" | "<" | "<=" | ">" | ">="

A bare attribute is a condition when it is a flag (``block if :card_testing:``). A comparison with an
attribute the payment does not have (no email was sent, say) is false, so `!=` never matches a missing value.
Numbers compare with numbers, text with text (case-insensitively); `<` and friends take numbers only.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Value = str | int | float | bool | None
Signals = Mapping[str, Value]
Lists = Mapping[str, frozenset[str]]
Predicate = Callable[[Signals, Lists], bool]

RULE_LENGTH_MAX = 500
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Kind(StrEnum):
    NUMBER = "number"
    TEXT = "text"
    FLAG = "flag"


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REVIEW = "review"


class RuleError(ValueError):
    """A rule that does not parse or does not type-check; `position` is the 0-based offset in the rule."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.reason = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    text: str
    predicate: Predicate
    lists: frozenset[str]          # the lists it reads
    needs_lists: bool = False      # it cannot match while every list it reads is empty

    def matches(self, signals: Signals, lists: Lists) -> bool:
        return self.predicate(signals, lists)


_TOKEN = re.compile(r"""\s*(?:
    (?P<attribute>:[a-z][a-z0-9_]*:)
  | (?P<list>@[a-z][a-z0-9_]*)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'[^']{0,200}'|"[^"]{0,200}")
  | (?P<operator><=|>=|!=|=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z]+)
  )""", re.VERBOSE)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(text: str) -> list[_Token]:
    tokens, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.lastgroup is None:
            position = at + len(text[at:]) - len(text[at:].lstrip())
            raise RuleError(f"unexpected {text[position:position + 10]!r}", position)
        start, kind = match.start(match.lastgroup), match.lastgroup
        value = match.group(kind)
        tokens.append(_Token(kind, value.lower() if kind == "word" else value, start))
        at = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


@dataclass(frozen=True, slots=True)
class _Operand:
    kind: Kind
    read: Callable[[Signals], Value]
    attribute: str | None = None       # the attribute it reads, or None for a constant
    constant: Value = None             # a constant's value (text lower-cased)


class _Parser:
    def __init__(self, text: str, attributes: Mapping[str, Kind]) -> None:
        self.text = text
        self.attributes = attributes
        self.tokens = _tokens(text)
        self.at = 0
        self.lists: set[str] = set()
        self.only_lists: set[int] = set()     # ids of the predicates that are false while their lists are empty

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def word(self, *words: str) -> bool:
        if self.token.kind == "word" and self.token.text in words:
            self.at += 1
            return True
        return False

    def fail(self, expected: str) -> RuleError:
        found = "the end of the rule" if self.token.kind == "end" else repr(self.token.text)
        return RuleError(f"expected {expected}, found {found}", self.token.position)

    def rule(self) -> Rule:
        action_token = self.token
        if not self.word(*Action):
            raise self.fail("allow, block or review")
        if not self.word("if"):
            raise self.fail("'if'")
        predicate = self.expression()
        if self.token.kind != "end":
            raise self.fail("'and', 'or' or the end of the rule")
        return Rule(Action(action_token.text), self.text, predicate, frozenset(self.lists),
                    id(predicate) in self.only_lists)

    def expression(self) -> Predicate:
        return self._chain("or", self.conjunction, any)

    def conjunction(self) -> Predicate:
        return self._chain("and", self.negation, all)

    def _chain(self, word: str, term: Callable[[], Predicate], combine: Callable[[Any], bool]) -> Predicate:
        """`term (word term)*`. It cannot match while its lists are empty when any term of an `and` (all
        terms of an `or`) cannot."""
        terms = [term()]
        while self.word(word):
            terms.append(term())
        if len(terms) == 1:
            return terms[0]
        predicate = _joined(terms, combine is all)
        needs = (t_id in self.only_lists for t_id in map(id, terms))
        if (any if combine is all else all)(needs):
            self.only_lists.add(id(predicate))
        return predicate

    def negation(self) -> Predicate:
        if self.word("not"):
            inner = self.negation()
            return lambda signals, lists: not inner(signals, lists)
        if self.token.kind == "paren" and self.token.text == "(":
            self.take()
            inner = self.expression()
            if not (self.token.kind == "paren" and self.token.text == ")"):
                raise self.fail("')'")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        start = self.token
        left = self.operand()
        if self.token.kind == "operator":
            operator = self.take()
            right_token = self.token
            right = self.operand()
            return self._compare(left, operator, right, right_token)
        negated = False
        if self.token.kind == "word" and self.token.text == "not" and self.tokens[self.at + 1].text == "in":
            self.take()
            negated = True
        if self.word("in"):
            return self._member(left, start, negated)
        if left.kind is Kind.FLAG:
            if left.attribute is not None:
                name = left.attribute
                return lambda signals, lists: signals.get(name) is True
            read = left.read
            return lambda signals, lists: read(signals) is True
        raise self.fail("a comparison operator or 'in'")

    def operand(self) -> _Operand:
        token = self.take()
        if token.kind == "attribute":
            name = token.text[1:-1]
            kind = self.attributes.get(name)
            if kind is None:
                raise RuleError(f"unknown attribute :{name}:", token.position)
            return _Operand(kind, lambda signals: signals.get(name), attribute=name)
        if token.kind == "number":
            number = float(token.text) if "." in token.text else int(token.text)
            return _Operand(Kind.NUMBER, lambda signals: number, constant=number)
        if token.kind == "string":
            text = token.text[1:-1].lower()
            return _Operand(Kind.TEXT, lambda signals: text, constant=text)
        self.at -= 1
        raise self.fail("an attribute, a number or a quoted text")

    def _compare(self, left: _Operand, operator: _Token, right: _Operand, right_token: _Token) -> Predicate:
        if left.kind is Kind.FLAG or right.kind is Kind.FLAG:
            if operator.text not in ("=", "!="):
                raise RuleError(f"{operator.text} does not apply to a flag", operator.position)
        elif left.kind != right.kind:
            raise RuleError(f"cannot compare {left.kind} with {right.kind}", right_token.position)
        elif left.kind is Kind.TEXT and operator.text not in ("=", "!="):
            raise RuleError(f"{operator.text} compares numbers only", operator.position)
        compare, read_left, read_right = _COMPARE[operator.text], left.read, right.read
        folded = left.kind is Kind.TEXT
        if left.attribute is not None and right.attribute is None and right.constant is not None:
            return _against_constant(compare, left.attribute, right.constant, folded)

        def predicate(signals: Signals, lists: Lists) -> bool:
            a, b = read_left(signals), read_right(signals)
            if a is None or b is None:
                return False
            if folded:
                a, b = str(a).lower(), str(b).lower()
            return compare(a, b)
        return predicate

    def _member(self, left: _Operand, start: _Token, negated: bool) -> Predicate:
        token = self.take()
        if token.kind != "list":
            self.at -= 1
            raise self.fail("a list such as @blocklist")
        if left.kind is Kind.FLAG:
            raise RuleError("a flag cannot be in a list", start.position)
        name, read = token.text[1:], left.read
        self.lists.add(name)

        def predicate(signals: Signals, lists: Lists) -> bool:
            value = read(signals)
            if value is None:
                return False
            found = str(value).lower() in lists.get(name, frozenset())
            return found != negated
        if not negated:
            self.only_lists.add(id(predicate))
        return predicate


def _against_constant(compare: Callable[[Any, Any], bool], name: str, constant: Value, folded: bool) -> Predicate:
    """`:name: <op> constant`: false when the payment has no such attribute (a text constant is lower-cased)."""
    if folded:
        def text_predicate(signals: Signals, lists: Lists) -> bool:
            value = signals.get(name)
            return value is not None and compare(str(value).lower(), constant)
        return text_predicate

    def predicate(signals: Signals, lists: Lists) -> bool:
        value = signals.get(name)
        return value is not None and compare(value, constant)
    return predicate


def _joined(terms: list[Predicate], both: bool) -> Predicate:
    """`a and b ...` (both) or `a or b ...`, evaluated left to right and stopping as soon as it is decided."""
    if len(terms) == 2:
        first, second = terms
        if both:
            return lambda signals, lists: first(signals, lists) and second(signals, lists)
        return lambda signals, lists: first(signals, lists) or second(signals, lists)
    if both:
        return lambda signals, lists: all(term(signals, lists) for term in terms)
    return lambda signals, lists: any(term(signals, lists) for term in terms)


def parse(text: str, attributes: Mapping[str, Kind]) -> Rule:
    """Compile one rule; RuleError names what is wrong and where."""
    if len(text) > RULE_LENGTH_MAX:
        raise RuleError(f"a rule is at most {RULE_LENGTH_MAX} characters", RULE_LENGTH_MAX)
    if not text.isprintable():
        raise RuleError("a rule is one line of printable text", next(i for i, c in enumerate(text)
                                                                      if not c.isprintable()))
    return _Parser(text, attributes).rule()
