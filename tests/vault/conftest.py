"""Fixtures for vault tests: a real Postgres cluster, a real SoftHSM2 token and the real vault process.

Built on the harness's ``base_stack`` (tests/conftest.py); the vault process is started once per session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import asyncpg
import pytest
import pytest_asyncio

from switch.devstack import REPO_ROOT, Stack
from switch.vault_client import VaultClient


def make_pan(prefix: str = "424242", length: int = 16) -> str:
    """A random PAN with a valid Luhn check digit."""
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


@pytest.fixture(scope="session")
def vault_stack(base_stack: Stack) -> Stack:
    """The harness stack (Postgres + SoftHSM2) with the vault process running."""
    if not base_stack.vault_socket:
        base_stack.start_vault()
    return base_stack


def vault_env(stack: Stack, **overrides: str) -> dict[str, str]:
    assert stack.hsm is not None
    return {**os.environ, **stack.hsm.env(), "VAULT_DATABASE_URL": stack.vault_database_url,
            "PYTHONPATH": str(REPO_ROOT), **overrides}


def run_vault_cli(stack: Stack, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vault", *args], env=vault_env(stack, **overrides),
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False)


@pytest_asyncio.fixture
async def vault_client(vault_stack: Stack):
    client = VaultClient(vault_stack.vault_socket, vault_stack.vault_credential, connections=4)
    await client.connect()
    yield client
    await client.close()


@pytest_asyncio.fixture
async def vault_db(vault_stack: Stack):
    pool = await asyncpg.create_pool(vault_stack.vault_database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()
