"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import pytest

from loadtest.httpclient import Client
from tests.integration.helpers import key, payment
from tests.integration.solo import eventually

pytestmark = pytest.mark.integration


async def test_healthz_and_readyz(api: Client, ops: Client) -> None:
    assert (await api.request("GET", "/healthz")).status == 200
    assert (await ops.request("GET", "/healthz")).status == 200
    ready = await ops.request("GET", "/readyz")
    assert ready.status == 200, ready.body
    body = ready.json()
    assert body["postgres"] and body["redis"] and body["vault"]
    assert body["networks"] == {"visa": True, "mastercard": True, "generic": True}
    for network in ("visa", "mastercard", "generic"):
        assert body["network_status"][network]["degraded"] is False
        assert body["network_status"][network]["endpoints"][0]["breaker"] == "closed"


async def test_operations_endpoints_are_not_on_the_merchant_port(api: Client, ops: Client, stack) -> None:
    anonymous = Client(stack.switch_url, "")
    for path in ("/metrics", "/readyz"):
        for client in (api, anonymous):                        # with a merchant's key, and without one
            refused = await client.request("GET", path)
            assert refused.status in (401, 404), (path, refused.status)
            assert b"switch_" not in refused.body and b"network_status" not in refused.body
        assert (await ops.request("GET", path)).status == 200
    await anonymous.close()
    assert (await ops.request("POST", "/metrics")).status == 405
    assert (await ops.request("GET", "/v1/payments")).status == 404


async def test_metrics_count_requests(api: Client, ops: Client) -> None:
    await api.request("POST", "/v1/payments", payment(), idempotency_key=key())

    counted = 'switch_http_requests_total{method="POST",route="payments.create",status="200"}'

    async def exposition() -> str | None:
        text = (await ops.request("GET", "/metrics")).body.decode()
        return text if counted in text else None

    # A worker hands its request counts to the exposition once a second (switch.common.metrics.Flushed).
    text = await eventually(exposition, 5.0)
    assert text is not None, "the payment is not counted in the exposition"
    assert any(line.startswith("switch_http_request_duration_seconds_bucket{") and 'route="payments.create"' in line
               for line in text.splitlines())
