"""Contract tests: schemathesis generates requests from the switch's own OpenAPI description
(/openapi.json) against the live stack (seeded, a bounded number of examples per operation, stateful
links), and checks that no answer is a 5xx, every status and body is one the description declares, and
every request the description forbids is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switch.dev.devstack import Stack

pytestmark = pytest.mark.integration

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection"
EXAMPLES_PER_OPERATION = 25
SEED = 20261202
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_live_api_keeps_its_openapi_contract(stack: Stack, tmp_path: Path) -> None:
    api_key = stack.seed_merchant("contract-shop", fraud_rules="lists")
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
               f"{stack.switch_url}/openapi.json",
               "-H", f"Authorization: Bearer {api_key}", "--checks", CHECKS, "-n", str(EXAMPLES_PER_OPERATION),
               "--seed", str(SEED), "--no-color", "--workers", "2", "--generation-database", "none",
               "--request-timeout", "10"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    failures = result.stdout.partition("=== FAILURES ===")[2].partition("=== WARNINGS ===")[0]
    summary = result.stdout.rpartition("SUMMARY")[2]
    assert result.returncode == 0, (failures[:8000] or result.stdout[-4000:]) + summary
    assert " passed" in summary and "failures" not in summary, summary
