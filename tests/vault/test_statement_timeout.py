"""A stuck statement does not hold the vault's card path: Postgres cancels it at the pool's statement
timeout, its callers hear "unavailable" from the vault (not their own timeout), and the path moves on. A
start that meets such a lock waits for it rather than exiting."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from switch.common.cards import CardNumber
from switch.common.errors import ConfigError
from switch.dev.devstack import Stack
from switch.vault_client import VaultClient
from switch.vault_protocol import VaultError, VaultUnavailable
from tests.vault.conftest import make_pan, spawned_vault
from vault.server import VaultConfig, create_pool


async def test_a_statement_stuck_behind_a_lock_is_cancelled_and_the_path_moves_on(vault_stack: Stack, vault_db):
    with spawned_vault(vault_stack, "vault-timeout", VAULT_STATEMENT_TIMEOUT_MS="300") as (socket_path, credential):
        client = VaultClient(socket_path, credential, connections=1, timeout_s=5.0)
        await client.connect()
        try:
            async with vault_db.acquire() as holder, holder.transaction():
                await holder.execute("LOCK TABLE vault.tokens IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                with pytest.raises(VaultError) as refused:
                    await client.tokenize("m_timeout", CardNumber(make_pan("424242")), 7, 2033, None)
                waited = time.monotonic() - started
            assert not isinstance(refused.value, VaultUnavailable), refused.value    # the vault's answer
            assert refused.value.code == "unavailable"
            assert waited < 4.0, waited                   # well before the client's own 5 s
            stored = await client.tokenize("m_timeout", CardNumber(make_pan("424242")), 7, 2033, None)
            assert stored.token.startswith("tok_")
        finally:
            await client.close()


async def test_a_start_waits_for_a_rotation_holding_the_keys_table(vault_stack: Stack, vault_db) -> None:
    name = f"vault-start-wait-{secrets.token_hex(3)}"
    log_path = vault_stack.run_dir / f"{name}.log"
    with contextlib.ExitStack() as started:
        starting: asyncio.Future[tuple[str, str]] | None = None
        try:
            async with vault_db.acquire() as holder, holder.transaction():
                await holder.execute("LOCK TABLE vault.keks IN EXCLUSIVE MODE")     # as rotate-kek takes it
                starting = asyncio.ensure_future(asyncio.to_thread(
                    started.enter_context, spawned_vault(vault_stack, name, VAULT_STATEMENT_TIMEOUT_MS="200")))
                await _logged(log_path, "trying again", starting)
                assert not starting.done(), starting.exception()        # still waiting, not gone
            socket_path, credential = await starting
            client = VaultClient(socket_path, credential, connections=1, timeout_s=5.0)
            await client.connect()
            try:
                stored = await client.tokenize("m_start_wait", CardNumber(make_pan("424242")), 7, 2033, None)
                assert stored.token.startswith("tok_")
            finally:
                await client.close()
        finally:
            if starting is not None and not starting.done():
                # The vault gets ready or exits now that the lock is gone; its exit joins `started` first.
                with contextlib.suppress(Exception):
                    await starting


async def _logged(path: Path, text: str, starting: asyncio.Future[Any], wait_s: float = 30.0) -> None:
    """Until the vault's log holds `text`; fails at once if the vault's start ended meanwhile."""
    deadline = time.monotonic() + wait_s
    while not _holds(path, text):
        if starting.done():
            raise AssertionError(f"the vault's start ended before logging {text!r}: {starting.exception()!r}")
        assert time.monotonic() < deadline, f"{text!r} not logged in {wait_s} s"
        await asyncio.sleep(0.05)


def _holds(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def test_the_vaults_pool_sets_its_statement_timeout_and_the_tools_pool_none(vault_stack: Stack) -> None:
    timed = await create_pool(vault_stack.vault_database_url, 1, statement_timeout_ms=1234)
    untimed = await create_pool(vault_stack.vault_database_url, 1)
    try:
        assert await timed.fetchval("SHOW statement_timeout") == "1234ms"
        assert await untimed.fetchval("SHOW statement_timeout") == "0"
    finally:
        await timed.close()
        await untimed.close()


@pytest.mark.parametrize(("value", "expected"), [(None, 3000), ("0", 0), ("250", 250)])
def test_the_timeout_comes_from_the_environment(value: str | None, expected: int) -> None:
    environ = {"VAULT_DATABASE_URL": "postgresql://x", "HSM_MODULE": "m", "HSM_TOKEN_LABEL": "t", "HSM_PIN": "p"}
    if value is not None:
        environ["VAULT_STATEMENT_TIMEOUT_MS"] = value
    assert VaultConfig.from_env(need_socket=False, environ=environ).statement_timeout_ms == expected


@pytest.mark.parametrize("value", ["-1", "3s", ""])
def test_a_bad_timeout_is_refused_by_name(value: str) -> None:
    environ = {"VAULT_DATABASE_URL": "postgresql://x", "HSM_MODULE": "m", "HSM_TOKEN_LABEL": "t", "HSM_PIN": "p",
               "VAULT_STATEMENT_TIMEOUT_MS": value}
    with pytest.raises(ConfigError, match="VAULT_STATEMENT_TIMEOUT_MS"):
        VaultConfig.from_env(need_socket=False, environ=environ)
