"""The OpenAPI description: valid OpenAPI 3.1, the checked-in copy is the generated one, and the route table
names every route the front ends answer (so a new endpoint without its description fails here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openapi_spec_validator import validate

from switch.frontends import openapi

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "openapi.json"
# Route names as the front ends return them: "payments.create", f"reviews.{...}", "stripe.refunds.get".
_ROUTE = re.compile(r'''(?:return|route =|else|^\s+) ?\(?f?"'''
                    r'''((?:stripe\.)?[a-z_]+\.[a-z_]+(?:\.[a-z_]+)?|[a-z_.]+\{[a-z_.()0-9]+\})"''', re.MULTILINE)
_EXPANSIONS = {"reviews.{review.group(2)}": ("reviews.approve", "reviews.reject"),
               "stripe.payment_methods.{action}": ("stripe.payment_methods.attach", "stripe.payment_methods.detach"),
               "stripe.payment_intents.{action}": tuple(f"stripe.payment_intents.{a}"
                                                        for a in ("capture", "cancel", "confirm"))}
NOT_API = {"healthz", "openapi", "rate_limited", "unknown"}


def test_the_description_is_valid_openapi_3_1() -> None:
    spec = openapi.spec()
    validate(spec)
    assert spec["openapi"] == "3.1.0"


def test_the_checked_in_description_is_the_generated_one() -> None:
    """Regenerate with `make openapi` after changing a route or a type."""
    assert CHECKED_IN.read_bytes() == openapi.encoded(), "docs/openapi.json is stale: run `make openapi`"


def route_names_in_code() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "switch" / "frontends" / "http").glob("*.py"), ROOT / "switch/frontends/stripe/api.py"]:
        for name in _ROUTE.findall(path.read_text()):
            if "{" in name:
                names.update(_EXPANSIONS[name])
            elif name.split(".")[0] in {"payments", "refunds", "reviews", "fraud", "balance", "balance_transactions",
                                        "payouts", "events", "webhook_endpoints", "stripe"}:
                names.add(name)
    return names


def test_every_route_the_code_answers_is_described_and_no_other() -> None:
    described = {route.id for route in openapi.NATIVE + openapi.STRIPE}
    in_code = route_names_in_code()
    assert len(in_code) > 30
    assert in_code - described == set(), "routes without a description"
    assert described - in_code == set(), "descriptions of routes the code does not answer"


def test_every_operation_has_an_error_answer_and_each_request_body_a_schema() -> None:
    spec = json.loads(openapi.encoded())
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "default" in operation["responses"], (method, path)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                assert media["schema"]["$ref"].startswith("#/components/schemas/"), (method, path)
