"""Test harness: the real services, started once per session on free loopback ports.

``base_stack``: a throwaway Postgres cluster, redis-server and a SoftHSM2 token (switch.dev.devstack).
``stack``: the same plus the vault, the acquirer simulator and a switch with one worker, and a seeded
merchant. Unit tests of pure logic use neither and start nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from loadtest.httpclient import Client
from switch.dev.devstack import REPO_ROOT, Stack, new_run_dir

# The tests' simulators write no daily settlement file by themselves: at the default cut-off (00:00 UTC) one
# would take the unsettled transactions of a test that then asks for its own file (POST /settlement).
SIMULATOR_ARGS = ["--settlement-time", "off"]

# No deadline on a property's examples: a busy 2-core machine can stall one past hypothesis's 200 ms.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


@pytest.fixture(scope="session")
def base_stack() -> Iterator[Stack]:
    run_dir = new_run_dir(REPO_ROOT / ".run" / "tests")
    # Tests send bursts from one address with a few keys; tests/integration/test_rate_limits.py checks the
    # limits on switches of its own.
    # Their merchants screen with their allow and block lists only: the suite pays with a few test cards
    # again and again. tests/integration/test_fraud.py seeds merchants with the default rules.
    stack = Stack(run_dir=run_dir, address_rate_limit_per_s=1_000_000, merchant_rate_limit_per_s=1_000_000,
                  fraud_rules="lists", switch_server_env={"SWITCH_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.4,0.8,1.6"})
    try:
        stack.start_postgres()
        stack.start_redis()
        stack.init_hsm()
        yield stack
    finally:
        stack.stop()
        if not os.environ.get("KEEP_RUN_DIR"):
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(base_stack: Stack) -> Stack:
    if not base_stack.vault_socket:
        base_stack.start_vault()
    if not base_stack.simulator_control_url:
        base_stack.start_simulator(SIMULATOR_ARGS)
    if not base_stack.switch_url:
        base_stack.start_switch(workers=1, extra_env={"SWITCH_NETWORK_TIMEOUT_S": "0.5",
                                                      "SWITCH_PAYMENT_BUDGET_S": "1.0"})
        base_stack.seed_merchant()
    return base_stack


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Client]:
    client = Client(stack.switch_url, stack.api_key)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ops(stack: Stack) -> AsyncIterator[Client]:
    """A client of the switch's operations port (/metrics, /readyz): loopback, no API key."""
    client = Client(stack.switch_ops_url, "")
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def db(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


def simulator(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the simulator's control API (JSON over HTTP on loopback)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(stack.simulator_control_url + path, data=data,
                                     method="POST" if body is not None else "GET",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())
