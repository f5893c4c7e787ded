"""The vault's /metrics and /healthz on its operations port: counters and histograms grow with the real
vault's requests, and the exposition holds no card number, token or merchant id. Then the scrape-time
collector on its own, with hand-made numbers."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from loadtest.httpclient import Client
from switch.common.cards import CardNumber, SecretStr
from switch.dev.devstack import Stack
from switch.vault_protocol import VaultError
from tests.vault.conftest import make_pan
from tests.vault.test_public_api import card_body, new_publishable_key
from vault.hsm import HSM_OPERATIONS
from vault.metrics import DURATION_BUCKETS_S, OPERATIONS, RequestStats, VaultCollector, registry_for, render

# A run of 13 to 19 digits: what a PAN would look like if one leaked into a name, a label or a help text.
CARD_NUMBER_LIKE = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_asyncio.fixture
async def ops(vault_stack: Stack) -> AsyncIterator[Client]:
    assert vault_stack.vault_ops_url.startswith("http://127.0.0.1:")
    client = Client(vault_stack.vault_ops_url)
    yield client
    await client.close()


async def scrape(ops: Client) -> str:
    response = await ops.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.body.decode()


async def test_requests_grow_the_counters_and_histograms(ops, vault_client):
    before = samples(await scrape(ops))
    merchant = f"m_metrics_{secrets.token_hex(4)}"
    info = await vault_client.tokenize(merchant, CardNumber(make_pan("424242")), 12, 2031, SecretStr("123"))
    await vault_client.detokenize(merchant, info.token)
    with pytest.raises(VaultError, match="not_found"):
        await vault_client.detokenize(merchant, "tok_doesnotexist")
    assert await vault_client.ping()
    await vault_client.mac_key("visa", 7)
    after = samples(await scrape(ops))

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("vault_requests_total", operation="tokenize", result="ok") == 1
    assert grew("vault_requests_total", operation="detokenize", result="ok") == 1
    assert grew("vault_requests_total", operation="detokenize", result="not_found") == 1
    assert grew("vault_requests_total", operation="mac_key", result="ok") == 1
    assert grew("vault_requests_total", operation="ping", result="ok") >= 1   # the client pings on its own too
    assert grew("vault_request_duration_seconds_count", operation="tokenize") == 1
    assert grew("vault_request_duration_seconds_count", operation="detokenize") == 2
    assert grew("vault_request_duration_seconds_bucket", operation="detokenize", le="+Inf") == 2
    assert grew("vault_request_duration_seconds_bucket", operation="detokenize", le="1.0") == 2
    assert 0 < grew("vault_request_duration_seconds_sum", operation="detokenize") < 2
    assert grew("vault_tokens_written_total") == 1
    assert grew("vault_hsm_operations_total", operation="mac_cmac") == 1
    # The fingerprint key and the data keys were unwrapped at start; no card needs the HSM.
    assert value(after, "vault_hsm_operations_total", operation="unwrap") >= 2
    assert value(after, "vault_key_versions") >= 1
    assert value(after, "vault_key_version_active") >= 1


async def test_the_same_card_again_writes_no_new_row(ops, vault_client):
    pan = make_pan("555555")
    await vault_client.tokenize("m_metrics_again", CardNumber(pan), 1, 2032, None)
    before = samples(await scrape(ops))
    await vault_client.tokenize("m_metrics_again", CardNumber(pan), 1, 2032, None)
    after = samples(await scrape(ops))
    assert value(after, "vault_requests_total", operation="tokenize", result="ok") - value(
        before, "vault_requests_total", operation="tokenize", result="ok") == 1
    assert value(after, "vault_tokens_written_total") == value(before, "vault_tokens_written_total")


async def test_public_tokenize_is_counted(ops, vault_stack):
    _, publishable_key = new_publishable_key(vault_stack, "m_metrics_public")
    http = Client(vault_stack.vault_http_url)
    try:
        before = samples(await scrape(ops))
        good = await http.request("POST", "/v1/tokens", card_body(make_pan("424242")), api_key=publishable_key)
        assert good.status == 200, good.body
        refused = await http.request("POST", "/v1/tokens", card_body("4242424242424241"), api_key=publishable_key)
        assert refused.status == 402, refused.body
        unauthorized = await http.request("POST", "/v1/tokens", card_body(make_pan()), api_key="pk_test_nope")
        assert unauthorized.status == 401
        after = samples(await scrape(ops))
    finally:
        await http.close()
    for result in ("ok", "incorrect_number", "unauthorized"):
        assert value(after, "vault_requests_total", operation="public_tokenize", result=result) - value(
            before, "vault_requests_total", operation="public_tokenize", result=result) == 1, result
    assert value(after, "vault_tokens_written_total") - value(before, "vault_tokens_written_total") == 1


async def test_exposition_holds_no_card_number_token_or_merchant(ops, vault_client):
    pan = make_pan("411111", 19)
    merchant = f"m_secret_{secrets.token_hex(6)}"
    info = await vault_client.tokenize(merchant, CardNumber(pan), 12, 2031, SecretStr("987"))
    await vault_client.detokenize(merchant, info.token)
    text = await scrape(ops)
    assert "vault_requests_total" in text
    for secret in (pan, pan[6:], info.token, info.token.removeprefix("tok_"), merchant):
        assert secret not in text, "the exposition shows card data, a token or a merchant"
    for line in text.splitlines():
        # A sample line ends with its value, a float that may have many digits; the rest must hold none.
        shown = line if line.startswith("#") else line.rsplit(" ", 1)[0]
        assert not CARD_NUMBER_LIKE.search(shown), line
        assert "987" not in shown, line                                  # the CVC
        assert "vault-kek-v" not in shown and "mac-master-" not in shown, line  # HSM key labels


async def test_healthz_and_unknown_paths(ops):
    health = await ops.request("GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert (await ops.request("GET", "/v1/tokens")).status == 404
    assert (await ops.request("POST", "/metrics", {})).status == 405


# ----- the collector on its own --------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_a_bound_belongs_to_its_bucket() -> None:
    stats = RequestStats()
    for seconds in (0.00005, 0.00007, 0.0001, 0.003, 2.5):
        stats.observe("detokenize", "ok", seconds)
    stats.observe("detokenize", "some_new_code", 0.0002)
    stats.observe("tokenize", "invalid_number", 0.001)
    stats.tokens_written = 3
    hsm_counts = dict.fromkeys(HSM_OPERATIONS, 0) | {"unwrap": 2}
    text = render(registry_for(VaultCollector(stats, lambda: hsm_counts, lambda: ([1, 2, 3], 3)))).decode()
    found = samples(text)

    def bucket(le: str) -> float:
        return value(found, "vault_request_duration_seconds_bucket", operation="detokenize", le=le)

    assert [bucket(le) for le in ("5e-05", "0.0001", "0.00025", "0.0025", "0.005", "1.0", "+Inf")] == [
        1, 3, 4, 4, 5, 5, 6]
    assert value(found, "vault_request_duration_seconds_count", operation="detokenize") == 6
    assert abs(value(found, "vault_request_duration_seconds_sum", operation="detokenize") - 2.50342) < 1e-9
    assert value(found, "vault_requests_total", operation="detokenize", result="ok") == 5
    assert value(found, "vault_requests_total", operation="detokenize", result="other") == 1
    assert value(found, "vault_requests_total", operation="tokenize", result="invalid_number") == 1
    # Every operation has its "ok" series and its histogram from the start.
    for operation in OPERATIONS:
        assert (("vault_requests_total", (("operation", operation), ("result", "ok")))) in found
        assert ("vault_request_duration_seconds_bucket", (("le", "+Inf"), ("operation", operation))) in found
    assert len([key for key in found if key[0] == "vault_request_duration_seconds_bucket"
                and dict(key[1])["operation"] == "ping"]) == len(DURATION_BUCKETS_S) + 1
    assert value(found, "vault_tokens_written_total") == 3
    assert value(found, "vault_hsm_operations_total", operation="unwrap") == 2
    assert {dict(key[1])["operation"] for key in found if key[0] == "vault_hsm_operations_total"} == set(
        HSM_OPERATIONS)
    assert (value(found, "vault_key_versions"), value(found, "vault_key_version_active")) == (3, 3)
    assert "some_new_code" not in text
