"""Contract tests: schemathesis generates requests from the switch's own OpenAPI description
(/openapi.json) against the live stack (seeded, a bounded number of examples per operation, stateful
links), and checks that no answer is a 5xx, every status and body is one the description declares, and
every request the description forbids is refused."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.dev.devstack import Stack, free_port

pytestmark = pytest.mark.integration

# One worker: with two, hypothesis describes strategies from two threads at once, and CPython 3.11's
# ast.parse is not safe for that ("AST constructor recursion depth mismatch", an error of the tool's own).
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection"
EXAMPLES_PER_OPERATION = 25
SEED = 20261202
CONFIG = Path(__file__).with_name("schemathesis.toml")


class _Ok(http.server.BaseHTTPRequestHandler):
    """The webhook receiver of the run: 200 to everything."""

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def webhook_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_live_api_keeps_its_openapi_contract(stack: Stack, tmp_path: Path, webhook_port: int) -> None:
    api_key = stack.seed_merchant("contract-shop", fraud_rules="lists")
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
               f"{stack.switch_url}/openapi.json",
               "-H", f"Authorization: Bearer {api_key}", "--checks", CHECKS, "-n", str(EXAMPLES_PER_OPERATION),
               "--seed", str(SEED), "--no-color", "--workers", "1", "--generation-database", "none",
               "--request-timeout", "10"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
           "CONTRACT_WEBHOOK_PORT": str(webhook_port),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                                check=False)
    finally:
        _delete_endpoints(stack, api_key)
    failures = result.stdout.partition("=== FAILURES ===")[2].partition("=== WARNINGS ===")[0]
    summary = result.stdout.rpartition("SUMMARY")[2]
    assert result.returncode == 0, (failures[:8000] or result.stdout[-4000:]) + summary
    assert " passed" in summary and "failures" not in summary, summary


def _delete_endpoints(stack: Stack, api_key: str) -> None:
    """The run's endpoints go: the tests after it share the stack and its delivery queue."""
    def call(method: str, path: str) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(stack.switch_url + path, method=method,
                                         headers={"authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return json.loads(answer.read())  # type: ignore[no-any-return]

    for endpoint in call("GET", "/v1/webhook_endpoints?limit=100")["data"]:
        call("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}")
