"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import pytest

from loadtest.httpclient import Client
from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration


async def test_healthz_and_readyz(api: Client) -> None:
    assert (await api.request("GET", "/healthz")).status == 200
    ready = await api.request("GET", "/readyz")
    assert ready.status == 200, ready.body
    body = ready.json()
    assert body["postgres"] and body["redis"] and body["vault"]
    assert body["networks"] == {"visa": True, "mastercard": True, "generic": True}
    for network in ("visa", "mastercard", "generic"):
        assert body["network_status"][network]["degraded"] is False
        assert body["network_status"][network]["endpoints"][0]["breaker"] == "closed"


async def test_metrics_count_requests(api: Client) -> None:
    await api.request("POST", "/v1/payments", payment(), idempotency_key=key())
    text = (await api.request("GET", "/metrics")).body.decode()
    assert 'switch_http_requests_total{method="POST",route="payments.create",status="200"}' in text
    assert "switch_http_request_duration_seconds_bucket" in text
