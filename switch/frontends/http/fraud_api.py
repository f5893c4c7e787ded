"""The merchant API's fraud endpoints: rules, allow and block lists, and the review queue's listing.

    GET  /v1/fraud/rules                   the rule set in force (version 0: the defaults)
    POST /v1/fraud/rules                   {"rules": [{"rule": "block if ...", "shadow": false}, ...],
                                            "fail_closed": false}: a new version; a bad rule is a 400 that
                                           names the rule and the position
    GET  /v1/fraud/lists/{name}            a list's values
    POST /v1/fraud/lists/{name}            {"value": "..."}: add a value
    POST /v1/fraud/lists/{name}/remove     {"value": "..."}: remove it
    GET  /v1/reviews                       payments waiting in the review queue

Review approve and reject (POST /v1/reviews/{id}/approve|reject) are payment commands: app.py routes them
through the engine under their Idempotency-Key. Rule and list changes apply on this worker at once and on
the others within switch.fraud.screen.POLICY_TTL_S.
"""

from __future__ import annotations

import re
from typing import Annotated

import asyncpg
import msgspec
from msgspec import Meta, Struct

from switch.common import errors
from switch.common.http import Response
from switch.fraud import admin
from switch.fraud.policy import RULES_MAX, RuleSpec
from switch.fraud.rules import RuleError
from switch.fraud.screen import Screener
from switch.frontends.http import render, schema
from switch.merchants import Merchant
from switch.payments.outcome import Listing
from switch.store import fraud as fraud_store

_LIST = re.compile(r"^/v1/fraud/lists/([a-z][a-z0-9_]{0,63})(/remove)?$")


class RulesBody(Struct, forbid_unknown_fields=True):
    rules: Annotated[list[RuleSpec], Meta(max_length=RULES_MAX)]
    fail_closed: bool = False


class ListValueBody(Struct, forbid_unknown_fields=True):
    value: Annotated[str, Meta(min_length=1, max_length=admin.LIST_VALUE_LENGTH_MAX)]


_rules_decoder = msgspec.json.Decoder(RulesBody)
_value_decoder = msgspec.json.Decoder(ListValueBody)
_encoder = msgspec.json.Encoder()


class RuleSetObject(Struct):
    version: int
    rules: list[RuleSpec]
    fail_closed: bool
    created: int | None
    actor: str | None
    object: str = "fraud_rule_set"


class ListItem(Struct):
    value: str
    created: int


class ListObject(Struct):
    name: str
    data: list[ListItem]
    object: str = "fraud_list"


class ReviewObject(Struct):
    id: str
    payment: str
    open: bool
    reason: str
    rule: str | None
    risk_level: str
    risk_score: int | None
    created: int
    object: str = "review"


class ReviewList(Struct):
    data: list[ReviewObject]
    has_more: bool
    url: str = "/v1/reviews"
    object: str = "list"


def _rule_set(found: admin.RuleSet) -> bytes:
    created = int(found.created_at.timestamp()) if found.created_at else None
    return _encoder.encode(RuleSetObject(found.version, found.rules, found.fail_closed, created, found.actor))


class FraudApi:
    def __init__(self, pool: asyncpg.Pool, screener: Screener) -> None:
        self.pool = pool
        self.screener = screener

    async def get(self, merchant: Merchant, path: str) -> tuple[str, Response] | None:
        if path == "/v1/fraud/rules":
            return "fraud.rules.get", Response(200, _rule_set(await admin.rule_set(self.pool, merchant.id)))
        match = _LIST.match(path)
        if match and not match.group(2):
            return "fraud.lists.get", Response(200, await self._list(merchant, match.group(1)))
        return None

    async def post(self, merchant: Merchant, path: str, body: bytes) -> tuple[str, Response] | None:
        if path == "/v1/fraud/rules":
            return "fraud.rules.update", await self._set_rules(merchant, body)
        match = _LIST.match(path)
        if match is None:
            return None
        request: ListValueBody = schema.decode(_value_decoder, body)
        change = admin.remove_from_list if match.group(2) else admin.add_to_list
        try:
            async with self.pool.acquire() as conn:
                await change(conn, merchant.id, match.group(1), request.value, f"api:{merchant.id}")
        except ValueError as error:
            raise errors.invalid_request("parameter_invalid", str(error), "value") from None
        self.screener.forget(merchant.id)
        route = "fraud.lists.remove" if match.group(2) else "fraud.lists.update"
        return route, Response(200, await self._list(merchant, match.group(1)))

    async def _set_rules(self, merchant: Merchant, body: bytes) -> Response:
        request: RulesBody = schema.decode(_rules_decoder, body)
        try:
            async with self.pool.acquire() as conn:
                created = await admin.set_rules(conn, merchant.id, request.rules, request.fail_closed,
                                                f"api:{merchant.id}")
        except RuleError as error:
            index = getattr(error, "index", 0)
            raise errors.invalid_request("rule_invalid", f"rules[{index}]: {error}",
                                         f"rules[{index}][rule]") from None
        self.screener.forget(merchant.id)
        return Response(200, _rule_set(created))

    async def _list(self, merchant: Merchant, name: str) -> bytes:
        rows = await fraud_store.get_list(self.pool, merchant.id, name)
        return _encoder.encode(ListObject(name, [ListItem(row["value"], int(row["created_at"].timestamp()))
                                                for row in rows]))


def reviews(page: Listing) -> bytes:
    data = []
    for p in page.payments:
        fraud = p.fraud
        data.append(ReviewObject(render.review_id(p.id), p.id, p.review_status == "open", "rule",
                                 fraud.rule if fraud else None, fraud.risk_level if fraud else "not_assessed",
                                 fraud.risk_score if fraud else None, int(p.created_at.timestamp())))
    return _encoder.encode(ReviewList(data, page.has_more))
