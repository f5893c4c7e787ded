"""Golden test of the merchant HTTP API: the responses of the `make demo` flow (switch/demo.py) and of the
error paths around it, pinned byte for byte after normalisation.

Each exchange records the status, the ``content-type`` and ``idempotent-replayed`` headers and the body as
the exact bytes the server sent, after replacing what varies from run to run: object ids (``pay_``,
``re_``, ``tok_``, ``req_``, ``acct_``, ...) become ``<prefix>_<n>`` numbered in order of first appearance,
``created`` timestamps become 0 and the simulator's authorization codes (a counter over the whole test
session) become ``AUTH_<n>``, card fingerprints (keyed per run) ``FP_<n>``, and the fraud screen's score and
reasons, which follow the velocity of the suite's shared test cards, ``0`` and ``[]``
(tests/integration/test_fraud.py pins those). Key order, whitespace and every other byte of a body are kept,
so a change of any of them fails the test.

The golden data is tests/integration/golden/demo_flow.json. To (re)generate it after a deliberate change:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/integration/test_golden_http.py

then review the diff of the golden file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from loadtest.httpclient import Client, HttpResponse

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "golden" / "demo_flow.json"
REGENERATE = "UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/integration/test_golden_http.py"

VISA_OK = "4242424242424242"
VISA_DECLINE = "4000000000000002"

# switch/common/ids.py: a type prefix and 22 base62 digits. The HTTP front end: "req_" + token_urlsafe(12).
_OBJECT_ID = re.compile(rb"\b([a-z]{2,5})_([0-9A-Za-z]{22})(?![0-9A-Za-z])")
_REQUEST_ID = re.compile(rb"\breq_[0-9A-Za-z_-]{16}(?![0-9A-Za-z_-])")
_CREATED = re.compile(rb'"created":\d+')
_AUTH_CODE = re.compile(rb'"authorization_code":"([0-9A-Z]{6})"')
_FINGERPRINT = re.compile(rb'"fingerprint":"([0-9a-f]{16})"')
_RISK_SCORE = re.compile(rb'"risk_score":\d+')
_REASONS = re.compile(rb'"reasons":\[[^\]]*\]')


class Normaliser:
    """Run-to-run values -> stable placeholders, numbered per kind in order of first appearance; one
    instance spans the whole flow, so the same id gets the same placeholder everywhere."""

    def __init__(self) -> None:
        self.seen: dict[bytes, bytes] = {}
        self.counts: dict[bytes, int] = {}

    def placeholder(self, kind: bytes, value: bytes) -> bytes:
        if value not in self.seen:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.seen[value] = kind + b"_%d" % self.counts[kind]
        return self.seen[value]

    def __call__(self, data: bytes) -> bytes:
        data = _REQUEST_ID.sub(lambda m: self.placeholder(b"req", m.group(0)), data)
        data = _OBJECT_ID.sub(lambda m: self.placeholder(m.group(1), m.group(0)), data)
        data = _CREATED.sub(b'"created":0', data)
        data = _FINGERPRINT.sub(lambda m: b'"fingerprint":"%s"' % self.placeholder(b"FP", m.group(1)), data)
        data = _REASONS.sub(b'"reasons":[]', _RISK_SCORE.sub(b'"risk_score":0', data))
        return _AUTH_CODE.sub(lambda m: b'"authorization_code":"%s"' % self.placeholder(b"AUTH", m.group(1)), data)

    def text(self, value: str) -> str:
        return self(value.encode()).decode()


def card(number: str) -> dict[str, Any]:
    return {"card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}


class Recorder:
    """Sends requests as the fresh merchant and records each exchange, normalised."""

    def __init__(self, client: Client, normalise: Normaliser) -> None:
        self.client = client
        self.normalise = normalise
        self.exchanges: list[dict[str, Any]] = []

    async def call(self, name: str, method: str, path: str, body: dict[str, Any] | None = None, *,
                   idempotency_key: str | None = None, authenticated: bool = True) -> HttpResponse:
        payload = json.dumps(body).encode() if body is not None else None
        response = await self.client.request(method, path, payload, idempotency_key=idempotency_key,
                                             api_key=None if authenticated else "")
        request_id = response.headers.get("request-id")
        assert request_id is not None, f"{name}: no request-id header"
        assert _REQUEST_ID.fullmatch(request_id.encode()), f"{name}: request-id {request_id!r}"
        # The response first: its new ids get their numbers before the request's (already seen) ones.
        normalised_body = self.normalise(response.body)
        self.exchanges.append({
            "name": name,
            "request": {
                "method": method,
                "path": self.normalise.text(path),
                "authenticated": authenticated,
                "idempotency_key": idempotency_key,
                "body": self.normalise(payload).decode() if payload is not None else None,
            },
            "status": response.status,
            "headers": {
                "content-type": response.headers.get("content-type"),
                "idempotent-replayed": response.headers.get("idempotent-replayed"),
            },
            "body": normalised_body.decode(),
        })
        return response


def render(exchanges: list[dict[str, Any]]) -> str:
    return json.dumps({"exchanges": exchanges}, indent=2) + "\n"


async def test_golden_demo_flow(stack) -> None:
    # A fresh merchant: its list, its vault tokens and its idempotency keys hold only this flow's objects.
    client = Client(stack.switch_url, stack.seed_merchant("golden-shop"))
    normalise = Normaliser()
    flow = Recorder(client, normalise)
    try:
        authorize = {"amount": 5000, "currency": "usd", "capture_method": "manual", "payment_method": card(VISA_OK),
                     "description": "Order #1001"}
        first = await flow.call("authorize manual capture", "POST", "/v1/payments", authorize,
                                idempotency_key="golden-authorize")
        assert first.status == 200, first.body
        payment_id = first.json()["id"]

        await flow.call("capture", "POST", f"/v1/payments/{payment_id}/capture", {},
                        idempotency_key="golden-capture")
        refund = await flow.call("partial refund", "POST", "/v1/refunds", {"payment": payment_id, "amount": 1500},
                                 idempotency_key="golden-refund")
        assert refund.status == 200, refund.body
        await flow.call("get payment", "GET", f"/v1/payments/{payment_id}")
        await flow.call("get refund", "GET", f"/v1/refunds/{refund.json()['id']}")
        await flow.call("declined card", "POST", "/v1/payments",
                        {"amount": 2000, "currency": "usd", "payment_method": card(VISA_DECLINE)},
                        idempotency_key="golden-declined")
        replay = await flow.call("idempotent replay of the authorization", "POST", "/v1/payments", authorize,
                                 idempotency_key="golden-authorize")
        assert (replay.status, replay.body) == (first.status, first.body), "a replay must be byte-identical"

        second = await flow.call("authorize manual capture (to cancel)", "POST", "/v1/payments",
                                 {"amount": 3000, "currency": "usd", "capture_method": "manual",
                                  "payment_method": card(VISA_OK)}, idempotency_key="golden-authorize-2")
        assert second.status == 200, second.body
        second_id = second.json()["id"]
        await flow.call("capture more than capturable", "POST", f"/v1/payments/{second_id}/capture",
                        {"amount_to_capture": 3001}, idempotency_key="golden-capture-too-much")
        await flow.call("cancel manual-capture authorization", "POST", f"/v1/payments/{second_id}/cancel", {},
                        idempotency_key="golden-cancel")
        await flow.call("sale (automatic capture)", "POST", "/v1/payments",
                        {"amount": 1200, "currency": "usd", "capture_method": "automatic",
                         "payment_method": card(VISA_OK)}, idempotency_key="golden-sale")
        await flow.call("list payments limit=2", "GET", "/v1/payments?limit=2")

        await flow.call("validation error: amount missing", "POST", "/v1/payments",
                        {"currency": "usd", "payment_method": card(VISA_OK)}, idempotency_key="golden-no-amount")
        # A missing top-level field names no param (msgspec's path is `$`); a bad value does.
        await flow.call("validation error: amount zero", "POST", "/v1/payments",
                        {"amount": 0, "currency": "usd", "payment_method": card(VISA_OK)},
                        idempotency_key="golden-amount-zero")
        await flow.call("idempotency key reused with a different body", "POST", "/v1/payments",
                        {**authorize, "amount": 5001}, idempotency_key="golden-authorize")
        await flow.call("no API key", "POST", "/v1/payments", authorize, idempotency_key="golden-no-key",
                        authenticated=False)
        await flow.call("unknown URL", "GET", "/v1/subscriptions")
    finally:
        await client.close()

    actual = render(flow.exchanges)
    for number in (VISA_OK, VISA_DECLINE):
        assert number not in "".join(e["body"] for e in flow.exchanges), "a response carries a card number"

    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual)
        return
    if not GOLDEN.exists():
        pytest.fail(f"golden file {GOLDEN} is missing; generate it with: {REGENERATE}", pytrace=False)

    expected = json.loads(GOLDEN.read_text())["exchanges"]
    assert [e["name"] for e in flow.exchanges] == [e["name"] for e in expected], "the flow's steps changed"
    for got, want in zip(flow.exchanges, expected, strict=True):
        name = want["name"]
        assert got["request"] == want["request"], f"{name}: request differs from the golden file"
        assert got["status"] == want["status"], f"{name}: status"
        assert got["headers"] == want["headers"], f"{name}: headers"
        assert got["body"].encode() == want["body"].encode(), f"{name}: body differs (bytes, after normalisation)"
    assert actual == GOLDEN.read_text(), f"golden file differs from the rendered flow; regenerate with: {REGENERATE}"
