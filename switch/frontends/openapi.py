"""The OpenAPI 3.1 description of the merchant port: the native API and the Stripe-compatible one, made
from the route table below and the msgspec types the front ends decode and encode (schemas by
msgspec.json.schema_components), so a type's change is the spec's. Served at /openapi.json and checked
in as docs/openapi.json (a test fails when they differ); every operation's id is the route name the
front ends report in metrics, and a test checks the table names every route the code answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Struct

from switch.common.validation import ecma_pattern
from switch.frontends.http import balance_api, events_api, fraud_api, render, schema, webhooks_api
from switch.frontends.stripe import events as stripe_events
from switch.frontends.stripe import params as stripe_params
from switch.frontends.stripe import render as stripe_render
from switch.frontends.stripe.api import API_VERSION as STRIPE_VERSION
from switch.frontends.stripe.api import PREFIX as STRIPE_PREFIX
from switch.payments import commands

VERSION = "1.0.0"
_ID = "[0-9A-Za-z]{10,40}"


class ErrorObject(Struct):
    type: str
    code: str
    message: str
    param: str | None = None
    decline_code: str | None = None
    request_id: str | None = None


class ErrorBody(Struct):
    """Every error: Stripe's shape (a Stripe-compatible card error also carries the PaymentIntent)."""

    error: ErrorObject


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    required: bool = False
    where: str = "query"


@dataclass(frozen=True)
class Route:
    method: str
    path: str                         # a template: /v1/payments/{id}
    id: str                           # the route's name in metrics
    summary: str
    answer: Any                       # the 200 body's type
    body: Any = None                  # the request body's type
    params: tuple[Param, ...] = ()
    idempotent: bool = False          # a payment command: Idempotency-Key required
    form: bool = False                # a Stripe-compatible body: form-encoded, or JSON
    example: dict[str, Any] | None = None   # a request body that works on the simulator
    body_required: bool = True        # False: an empty body takes every default


def _id(prefix: str, pattern: str = _ID) -> Param:
    return Param("id", {"type": "string", "pattern": f"^{prefix}_{pattern}$"}, True, "path")


_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 100})
_TIME = {"type": "integer", "minimum": 0, "maximum": schema.TIME_MAX}
_PAGES = (_LIMIT, Param("starting_after", {"type": "string", "pattern": f"^pay_{_ID}$"}),
          Param("ending_before", {"type": "string", "pattern": f"^pay_{_ID}$"}))
_CREATED = (Param("created[gte]", _TIME), Param("created[lte]", _TIME))
_EVENT_CURSOR = {"type": "string", "pattern": "^evt_[0-9]{16}$"}
_LIST_NAME = Param("name", {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}, True, "path")
_EXPAND = Param("expand[]", {"type": "array", "maxItems": 10, "items": {
    "type": "string", "enum": sorted(stripe_render.EXPANDABLE | {f"data.{n}" for n in stripe_render.EXPANDABLE})}})

NATIVE: tuple[Route, ...] = (
    Route("POST", "/v1/payments", "payments.create", "Authorize, or sell with automatic capture",
          render.Payment, commands.Authorize, idempotent=True, example={
              "amount": 5000, "currency": "usd", "capture_method": "manual", "payment_method": {"card": {
                  "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}}),
    Route("GET", "/v1/payments", "payments.list", "The merchant's payments, newest first", render.PaymentList,
          params=_PAGES + _CREATED),
    Route("GET", "/v1/payments/{id}", "payments.get", "A payment", render.Payment, params=(_id("pay"),)),
    Route("POST", "/v1/payments/{id}/capture", "payments.capture", "Capture all or part of an authorization",
          render.Payment, schema.CaptureBody, (_id("pay"),), idempotent=True, body_required=False),
    Route("POST", "/v1/payments/{id}/cancel", "payments.cancel", "Void an authorization", render.Payment,
          schema.CancelBody, (_id("pay"),), idempotent=True, body_required=False),
    Route("POST", "/v1/refunds", "refunds.create", "Refund all or part of a captured payment", render.Refund,
          commands.Refund, idempotent=True),
    Route("GET", "/v1/refunds/{id}", "refunds.get", "A refund", render.Refund, params=(_id("re"),)),
    Route("GET", "/v1/reviews", "reviews.list", "Payments waiting in the review queue", fraud_api.ReviewList,
          params=(_LIMIT,)),
    Route("POST", "/v1/reviews/{id}/approve", "reviews.approve", "Close a review: the payment proceeds",
          render.Payment, schema.EmptyBody, (_id("prv"),), idempotent=True, body_required=False),
    Route("POST", "/v1/reviews/{id}/reject", "reviews.reject", "Close a review: cancel and reverse",
          render.Payment, schema.EmptyBody, (_id("prv"),), idempotent=True, body_required=False),
    Route("GET", "/v1/fraud/rules", "fraud.rules.get", "The rule set in force", fraud_api.RuleSetObject),
    Route("POST", "/v1/fraud/rules", "fraud.rules.update", "A new version of the rule set",
          fraud_api.RuleSetObject, fraud_api.RulesBody),
    Route("GET", "/v1/fraud/lists/{name}", "fraud.lists.get", "An allow or block list", fraud_api.ListObject,
          params=(_LIST_NAME,)),
    Route("POST", "/v1/fraud/lists/{name}", "fraud.lists.update", "Add a value to a list", fraud_api.ListObject,
          fraud_api.ListValueBody, (_LIST_NAME,)),
    Route("POST", "/v1/fraud/lists/{name}/remove", "fraud.lists.remove", "Remove a value from a list",
          fraud_api.ListObject, fraud_api.ListValueBody, (_LIST_NAME,)),
    Route("GET", "/v1/balance", "balance.get", "Available and pending funds per currency",
          balance_api.BalanceObject),
    Route("GET", "/v1/balance_transactions", "balance_transactions.list", "What moved the balance, newest first",
          render.ListOf[balance_api.BalanceTransaction], params=(_LIMIT, Param(
              "starting_after", {"type": "string", "pattern": "^txn_[0-9]{1,19}$"}))),
    Route("POST", "/v1/payouts", "payouts.create", "Pay out available funds", balance_api.PayoutObject,
          balance_api.PayoutBody, idempotent=True),
    Route("GET", "/v1/payouts", "payouts.list", "Payouts, newest first", render.ListOf[balance_api.PayoutObject],
          params=(_LIMIT,)),
    Route("GET", "/v1/payouts/{id}", "payouts.get", "A payout", balance_api.PayoutObject, params=(_id("po"),)),
    Route("GET", "/v1/events", "events.list", "Events, newest first", render.ListOf[events_api.EventObject],
          params=(_LIMIT, Param("starting_after", _EVENT_CURSOR), Param("ending_before", _EVENT_CURSOR),
                  Param("type", {"type": "string", "pattern": r"^[a-z_]{1,40}(\.[a-z_]{1,40}|\.\*)?$"}))
          + _CREATED),
    Route("GET", "/v1/events/{id}", "events.get", "An event", events_api.EventObject,
          params=(_id("evt", "[0-9]{16}"),)),
    Route("GET", "/v1/events/{id}/deliveries", "events.deliveries", "An event's webhook deliveries and attempts",
          render.ListOf[webhooks_api.Delivery], params=(_id("evt", "[0-9]{16}"),)),
    Route("POST", "/v1/webhook_endpoints", "webhook_endpoints.create", "A webhook endpoint (its secret shown once)",
          webhooks_api.EndpointObject, webhooks_api.CreateBody, example={
              "url": "https://example.com/hooks", "enabled_events": ["*"], "description": "orders"}),
    Route("GET", "/v1/webhook_endpoints", "webhook_endpoints.list", "Webhook endpoints",
          render.ListOf[webhooks_api.EndpointObject], params=(_LIMIT,)),
    Route("GET", "/v1/webhook_endpoints/{id}", "webhook_endpoints.get", "A webhook endpoint",
          webhooks_api.EndpointObject, params=(_id("we"),)),
    Route("POST", "/v1/webhook_endpoints/{id}", "webhook_endpoints.update", "Change or disable an endpoint",
          webhooks_api.EndpointObject, webhooks_api.UpdateBody, (_id("we"),)),
    Route("POST", "/v1/webhook_endpoints/{id}/roll_secret", "webhook_endpoints.roll_secret",
          "A new secret; the old one signs too until it expires", webhooks_api.EndpointObject,
          webhooks_api.RollBody, (_id("we"),), body_required=False),
    Route("DELETE", "/v1/webhook_endpoints/{id}", "webhook_endpoints.delete", "Delete an endpoint",
          webhooks_api.Deleted, params=(_id("we"),)),
)

_STRIPE_PAGES = (_LIMIT, Param("starting_after", {"type": "string", "pattern": f"^pi_{_ID}$"}),
                 Param("ending_before", {"type": "string", "pattern": f"^pi_{_ID}$"}),
                 Param("created[gte]", _TIME), Param("created[lte]", _TIME))
_REFUND_PAGES = (_LIMIT, Param("payment_intent", {"type": "string", "pattern": f"^pi_{_ID}$"}),
                 Param("charge", {"type": "string", "pattern": f"^ch_{_ID}$"}),
                 Param("starting_after", {"type": "string", "pattern": f"^re_{_ID}$"}),
                 Param("ending_before", {"type": "string", "pattern": f"^re_{_ID}$"}))

STRIPE: tuple[Route, ...] = (
    Route("POST", "/v1/payment_intents", "stripe.payment_intents.create", "Create a PaymentIntent (confirm=true "
          "authorizes it at once)", stripe_render.PaymentIntent, stripe_params.CreateIntent, form=True, example={
              "amount": 2000, "currency": "usd", "confirm": True, "capture_method": "manual",
              "payment_method": "pm_card_visa", "metadata": {"order": "A-17"}}),
    Route("GET", "/v1/payment_intents", "stripe.payment_intents.list", "PaymentIntents, newest first",
          stripe_render.StripeList, params=_STRIPE_PAGES + (_EXPAND,)),
    Route("GET", "/v1/payment_intents/{id}", "stripe.payment_intents.get", "A PaymentIntent",
          stripe_render.PaymentIntent, params=(_id("pi"), _EXPAND)),
    Route("POST", "/v1/payment_intents/{id}", "stripe.payment_intents.update", "Change description or metadata",
          stripe_render.PaymentIntent, stripe_params.UpdateIntent, (_id("pi"),), form=True, body_required=False),
    Route("POST", "/v1/payment_intents/{id}/confirm", "stripe.payment_intents.confirm", "Confirm a PaymentIntent",
          stripe_render.PaymentIntent, stripe_params.ConfirmIntent, (_id("pi"),), form=True, body_required=False),
    Route("POST", "/v1/payment_intents/{id}/capture", "stripe.payment_intents.capture", "Capture a PaymentIntent",
          stripe_render.PaymentIntent, stripe_params.CaptureIntent, (_id("pi"),), form=True, body_required=False),
    Route("POST", "/v1/payment_intents/{id}/cancel", "stripe.payment_intents.cancel", "Cancel a PaymentIntent",
          stripe_render.PaymentIntent, stripe_params.CancelIntent, (_id("pi"),), form=True, body_required=False),
    Route("POST", "/v1/customers", "stripe.customers.create", "A customer (with a payment_method: saved and "
          "attached)", stripe_render.Customer, stripe_params.CreateCustomer, form=True, body_required=False,
          example={"email": "jane@example.com", "name": "Jane", "payment_method": "pm_card_visa"}),
    Route("GET", "/v1/customers/{id}", "stripe.customers.get", "A customer", stripe_render.Customer,
          params=(_id("cus"),)),
    Route("GET", "/v1/customers/{id}/payment_methods", "stripe.customers.payment_methods",
          "A customer's saved cards, newest first", stripe_render.StripeList, params=(_id("cus"), _LIMIT)),
    Route("POST", "/v1/payment_methods", "stripe.payment_methods.create", "Save a card (the vault tokenizes it)",
          stripe_render.PaymentMethod, stripe_params.CreatePaymentMethod, form=True,
          example={"type": "card", "card": {"token": "tok_visa"}}),
    Route("GET", "/v1/payment_methods/{id}", "stripe.payment_methods.get", "A saved card",
          stripe_render.PaymentMethod, params=(_id("pm"),)),
    Route("POST", "/v1/payment_methods/{id}/attach", "stripe.payment_methods.attach",
          "Attach a saved card (or a test payment method, saved now) to a customer", stripe_render.PaymentMethod,
          stripe_params.AttachPaymentMethod, (_id("pm", "[0-9A-Za-z_]{4,60}"),), form=True),
    Route("POST", "/v1/payment_methods/{id}/detach", "stripe.payment_methods.detach", "Detach a saved card",
          stripe_render.PaymentMethod, stripe_params.Expanding, (_id("pm", "[0-9A-Za-z_]{4,60}"),), form=True,
          body_required=False),
    Route("POST", "/v1/webhook_endpoints", "stripe.webhook_endpoints.create", "An endpoint for Stripe's events, "
          "signed with Stripe-Signature (its secret shown once)", stripe_render.WebhookEndpoint,
          stripe_params.CreateWebhookEndpoint, form=True, example={
              "url": "https://example.com/stripe-hooks", "enabled_events": ["payment_intent.succeeded"]}),
    Route("GET", "/v1/webhook_endpoints", "stripe.webhook_endpoints.list", "Endpoints made here",
          stripe_render.StripeList, params=(_LIMIT,)),
    Route("GET", "/v1/webhook_endpoints/{id}", "stripe.webhook_endpoints.get", "An endpoint",
          stripe_render.WebhookEndpoint, params=(_id("we"),)),
    Route("DELETE", "/v1/webhook_endpoints/{id}", "stripe.webhook_endpoints.delete", "Delete an endpoint",
          stripe_render.DeletedEndpoint, params=(_id("we"),)),
    Route("GET", "/v1/events", "stripe.events.list", "Events in Stripe's shape, newest first",
          stripe_render.StripeList, params=(_LIMIT, Param("type", {"type": "string", "enum": sorted(
              stripe_events.OURS)}), Param("starting_after", _EVENT_CURSOR), Param("ending_before", _EVENT_CURSOR))),
    Route("GET", "/v1/events/{id}", "stripe.events.get", "An event in Stripe's shape", stripe_events.StripeEvent,
          params=(_id("evt", "[0-9]{16}"),)),
    Route("GET", "/v1/charges/{id}", "stripe.charges.get", "A Charge", stripe_render.Charge,
          params=(_id("ch"), _EXPAND)),
    Route("POST", "/v1/refunds", "stripe.refunds.create", "Refund a PaymentIntent", stripe_render.StripeRefund,
          stripe_params.CreateRefund, form=True),
    Route("GET", "/v1/refunds", "stripe.refunds.list", "Refunds, newest first", stripe_render.StripeList,
          params=_REFUND_PAGES),
    Route("GET", "/v1/refunds/{id}", "stripe.refunds.get", "A Refund", stripe_render.StripeRefund,
          params=(_id("re"), _EXPAND)),
)


def _ecma_patterns(node: object) -> None:
    """Every `pattern` in the schemas as JSON Schema readers take it (validation.ecma_pattern)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                node[key] = ecma_pattern(value)
            else:
                _ecma_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _ecma_patterns(item)


def spec() -> dict[str, Any]:
    routes = [(route, route.path, "native") for route in NATIVE] + \
             [(route, STRIPE_PREFIX + route.path, "stripe") for route in STRIPE]
    types = [ErrorBody] + [t for route, _, _ in routes for t in (route.answer, route.body) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    _ecma_patterns(components)
    refs = dict(zip([id(t) for t in types], schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route, path, tag in routes:
        operation = paths.setdefault(path, {})[route.method.lower()] = _operation(route, tag, refs)
        if links := _links(route, path, routes):
            operation["responses"]["200"]["links"] = links
    return {
        "openapi": "3.1.0",
        "info": {"title": "Payment switch: merchant API", "version": VERSION, "description": (
            "The native API (tag native) and the Stripe-compatible API under /stripe (tag stripe, Stripe-Version "
            f"{STRIPE_VERSION}). Errors: docs/errors.md; Stripe coverage: docs/stripe-compatibility.md.")},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "tags": [{"name": "native"}, {"name": "stripe"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"apiKey": {
            "type": "http", "scheme": "bearer", "description": "A merchant API key (or, for the Stripe SDKs, "
            "their secret key)"}}},
    }


def _links(route: Route, path: str, routes: list[tuple[Route, str, str]]) -> dict[str, Any]:
    """What a POST that makes an object leads to: every operation on `{path}/{id}`, with its id (for
    stateful tests, and for readers)."""
    if route.method != "POST" or "{" in path:
        return {}
    return {f"{target.id}": {"operationId": target.id, "parameters": {"path.id": "$response.body#/id"}}
            for target, target_path, _ in routes if target_path.startswith(path + "/{id}")}


_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "schema": {
    "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"}}


def _operation(route: Route, tag: str, refs: dict[int, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.id, "summary": route.summary, "tags": [tag],
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": refs[id(route.answer)]}}},
            "default": {"description": "An error (docs/errors.md)", "content": {"application/json": {
                "schema": refs[id(ErrorBody)]}}}}}
    parameters = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path", "schema": p.schema}
                  for p in route.params]
    if route.method == "POST" and (route.idempotent or route.form):
        parameters.append({**_IDEMPOTENCY_KEY, "required": route.idempotent})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        body_schema = refs[id(route.body)]
        media = ("application/x-www-form-urlencoded", "application/json") if route.form else ("application/json",)
        operation["requestBody"] = {"required": route.body_required,
                                    "content": {name: {"schema": body_schema} for name in media}}
        if route.example is not None:
            for content in operation["requestBody"]["content"].values():
                content["example"] = route.example
    return operation


def encoded() -> bytes:
    """The spec as served and checked in: sorted keys, two-space indent, a final newline."""
    import json
    return (json.dumps(spec(), indent=2, sort_keys=True) + "\n").encode()
