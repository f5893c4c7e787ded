"""Changing a merchant's screening: rule set versions and list items, each change audited (who, what,
when). Shared by the HTTP API and the CLI; workers see a change within POLICY_TTL_S (switch.fraud.screen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from switch.fraud.policy import DEFAULT_RULES, RuleSpec, compile_rules
from switch.fraud.rules import NAME, RuleError
from switch.store import fraud as fraud_store

LIST_RULES = DEFAULT_RULES[:3]
# Named rule sets a merchant can start from: the defaults, or its allow and block lists alone (a merchant
# that screens elsewhere, or a load test whose few cards would trip every velocity rule).
PRESETS = {"default": DEFAULT_RULES, "lists": LIST_RULES}
LIST_VALUE_LENGTH_MAX = 254
LIST_ITEMS_MAX = 10_000      # values per list: every worker keeps every list of a merchant it screens for
LISTS_MAX = 20


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int                        # 0: the documented defaults, never changed
    rules: list[RuleSpec]
    fail_closed: bool
    actor: str | None
    created_at: datetime | None


async def rule_set(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str) -> RuleSet:
    row = await fraud_store.get_rule_set(conn, merchant_id)
    if row is None:
        return RuleSet(0, [RuleSpec(rule) for rule in DEFAULT_RULES], False, None, None)
    return RuleSet(row["version"], msgspec.convert(row["rules"], list[RuleSpec]), row["fail_closed"], row["actor"],
                   row["created_at"])


async def set_rules(conn: asyncpg.Connection, merchant_id: str, specs: list[RuleSpec], fail_closed: bool,
                    actor: str) -> RuleSet:
    """A new version of the merchant's rules; RuleError (with `index`) when one does not compile."""
    compile_rules(specs)
    row = await fraud_store.insert_rule_set(conn, merchant_id, [msgspec.to_builtins(spec) for spec in specs],
                                            fail_closed, actor)
    return RuleSet(row["version"], specs, row["fail_closed"], row["actor"], row["created_at"])


def list_value(name: str, value: str) -> tuple[str, str]:
    """A list's name and a value as the rules compare them (lower case, trimmed); ValueError if invalid."""
    if not NAME.fullmatch(name):
        raise ValueError("a list name is a lower-case letter then up to 63 letters, digits or underscores")
    value = value.strip().lower()
    if not value or len(value) > LIST_VALUE_LENGTH_MAX or not value.isprintable():
        raise ValueError(f"a list value is 1 to {LIST_VALUE_LENGTH_MAX} printable characters")
    return name, value


async def add_to_list(conn: asyncpg.Connection, merchant_id: str, name: str, value: str, actor: str) -> bool:
    """Add a value; ValueError when the list or the merchant's lists are full (every worker holds them all)."""
    name, value = list_value(name, value)
    async with conn.transaction():
        items, lists = await fraud_store.count_list_items(conn, merchant_id, name)
        if items >= LIST_ITEMS_MAX:
            raise ValueError(f"a list holds at most {LIST_ITEMS_MAX} values")
        if items == 0 and lists >= LISTS_MAX:
            raise ValueError(f"a merchant has at most {LISTS_MAX} lists")
        return await fraud_store.insert_list_item(conn, merchant_id, name, value, actor)


async def remove_from_list(conn: asyncpg.Connection, merchant_id: str, name: str, value: str, actor: str) -> bool:
    name, value = list_value(name, value)
    return await fraud_store.delete_list_item(conn, merchant_id, name, value, actor)


__all__ = ["PRESETS", "RuleError", "RuleSet", "add_to_list", "remove_from_list", "rule_set", "set_rules"]
