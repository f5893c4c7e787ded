"""Fixtures for vault tests: a real Postgres cluster, a real SoftHSM2 token and the real vault process.

Built on the harness's ``base_stack`` (tests/conftest.py); the vault process is started once per session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from switch.dev.devstack import REPO_ROOT, Stack
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


@contextlib.contextmanager
def spawned_vault(stack: Stack, name: str, **overrides: str) -> Iterator[tuple[str, str]]:
    """Another ``vault serve`` process (on the stack's database and token unless overridden).

    Yields (socket path, credential); its log is ``<run_dir>/<name>.log``.
    """
    socket_path = str(stack.run_dir / f"{name}.sock")
    credential = secrets.token_urlsafe(16)
    log_path = stack.run_dir / f"{name}.log"
    env = vault_env(stack, VAULT_SOCKET=socket_path, VAULT_CREDENTIAL=credential, **overrides)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "vault", "serve"], env=env, cwd=REPO_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "VAULT READY" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, f"{name} not ready"
            time.sleep(0.05)
        yield socket_path, credential
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest_asyncio.fixture
async def isolated_vault_url(base_stack: Stack) -> AsyncIterator[str]:
    """A fresh database holding only an empty ``vault`` schema (owned by vault_app), for tests that break keys
    on purpose or must see a first start; dropped afterwards."""
    name = f"vault_iso_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base_stack.database_admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.execute(f"GRANT CREATE ON DATABASE {name} TO vault_app")
    finally:
        await admin.close()
    url = base_stack.vault_database_url.rsplit("/", 1)[0] + "/" + name
    connection = await asyncpg.connect(url)
    try:
        await connection.execute((REPO_ROOT / "vault" / "schema.sql").read_text())
    finally:
        await connection.close()
    yield url
    admin = await asyncpg.connect(base_stack.database_admin_url)
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()
