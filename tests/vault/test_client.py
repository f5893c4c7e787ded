"""VaultClient limits: bounded in-flight requests and deadlines answer a retryable VaultUnavailable."""

from __future__ import annotations

import asyncio

import pytest

from switch.common.cards import CardNumber
from switch.vault_client import VaultClient, VaultUnavailable
from tests.vault.conftest import make_pan


async def test_over_the_inflight_limit_is_retryable_unavailable(vault_stack):
    client = VaultClient(vault_stack.vault_socket, vault_stack.vault_credential, connections=1,
                         inflight_max=2)
    await client.connect()
    try:
        results = await asyncio.gather(
            *(client.tokenize("m_limit", CardNumber(make_pan()), 1, 2031, None) for _ in range(10)),
            return_exceptions=True)
        refused = [r for r in results if isinstance(r, VaultUnavailable)]
        assert len(refused) == 8 and all(r.retryable and r.code == "unavailable" for r in refused)
        assert await client.ping()
    finally:
        await client.close()


async def test_deadline_is_unavailable(vault_stack):
    client = VaultClient(vault_stack.vault_socket, vault_stack.vault_credential, connections=1)
    await client.connect()
    try:
        with pytest.raises(VaultUnavailable):
            await client.detokenize("m_limit", "tok_x", timeout_s=0.0)
        assert await client.ping()
    finally:
        await client.close()


async def test_unreachable_socket_is_unavailable(tmp_path):
    client = VaultClient(str(tmp_path / "nothing.sock"), "x", connections=1)
    with pytest.raises(VaultUnavailable):
        await client.connect()
