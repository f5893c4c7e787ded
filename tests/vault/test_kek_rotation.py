"""KEK rotation (PCI DSS 3.6/3.7): a new KEK inside the HSM, stored keys re-wrapped under it, the old one destroyed.

Keys wrapped by the old KEK keep working until they are re-wrapped, in running vaults and in vaults that
start in between; a failed re-wrap leaves every row as it was.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from switch.common.cards import CardNumber
from switch.dev.devstack import Stack
from switch.vault_client import VaultClient
from tests.vault.conftest import make_pan, run_vault_cli, spawned_vault
from vault import keks, service


async def _detokenize_all(socket_path: str, credential: str, merchant: str, cards: dict[str, str]) -> None:
    client = VaultClient(socket_path, credential, connections=1)
    await client.connect()
    try:
        results = await asyncio.gather(*(client.detokenize(merchant, token) for token in cards))
    finally:
        await client.close()
    assert [card.number.reveal() for card in results] == list(cards.values())


async def _key_labels(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch("SELECT kek_label FROM vault.data_keys UNION SELECT kek_label FROM vault.fingerprint_key")
    return {row["kek_label"] for row in rows}


async def test_rotate_kek_rewrap_and_destroy_the_old_one(vault_stack: Stack, vault_client, vault_db):
    merchant = "m_kek"
    pans = [make_pan("545454") for _ in range(20)]
    infos = await asyncio.gather(*(vault_client.tokenize(merchant, CardNumber(p), 7, 2033, None) for p in pans))
    cards = {info.token: pan for info, pan in zip(infos, pans, strict=True)}
    old_label = await vault_db.fetchval("SELECT label FROM vault.keks WHERE state = 'active'")

    result = run_vault_cli(vault_stack, "rotate-kek")
    assert result.returncode == 0, result.stderr
    new_label = result.stdout.strip().rsplit("(", 1)[1].rstrip(")")
    assert new_label != old_label and new_label.startswith("vault-kek-v")
    states = dict(await vault_db.fetch("SELECT label, state FROM vault.keks WHERE label = ANY($1::text[])",
                                       [old_label, new_label]))
    assert states == {old_label: "retired", new_label: "active"}
    assert new_label not in await _key_labels(vault_db)

    # Not yet re-wrapped: a vault starting now unwraps its keys under the retired KEK.
    with spawned_vault(vault_stack, "vault-kek-before") as (socket_path, credential):
        await _detokenize_all(socket_path, credential, merchant, cards)

    # A data key made now is wrapped under the new KEK, and the running vault (another process) unwraps it.
    result = run_vault_cli(vault_stack, "rotate-key")
    assert result.returncode == 0, result.stderr
    version = int(result.stdout.strip().rsplit(" ", 1)[1])
    assert await vault_db.fetchval("SELECT kek_label FROM vault.data_keys WHERE version = $1", version) == new_label
    for _ in range(100):
        pan = make_pan("545454")
        probe = await vault_client.tokenize(merchant, CardNumber(pan), 7, 2033, None)
        if await vault_db.fetchval("SELECT key_version FROM vault.tokens WHERE id = $1", probe.token) == version:
            cards[probe.token] = pan
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the running vault never used the data key wrapped under the new KEK")

    result = run_vault_cli(vault_stack, "rewrap-keys", "--destroy-retired")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rewrapped: ") and old_label in result.stdout
    assert await _key_labels(vault_db) == {new_label}
    assert await vault_db.fetchval("SELECT state FROM vault.keks WHERE label = $1", old_label) == "destroyed"

    # The old KEK is gone from the HSM; a fresh vault unwraps everything under the new one, and the
    # fingerprint key is the same key (the same card still dedupes to the same token).
    with spawned_vault(vault_stack, "vault-kek-after") as (socket_path, credential):
        await _detokenize_all(socket_path, credential, merchant, cards)
        client = VaultClient(socket_path, credential, connections=1)
        await client.connect()
        try:
            again = await client.tokenize(merchant, CardNumber(pans[0]), 7, 2033, None)
        finally:
            await client.close()
    assert again.token == infos[0].token
    await _detokenize_all(vault_stack.vault_socket, vault_stack.vault_credential, merchant, cards)

    # Nothing left to do: a second run re-wraps nothing.
    result = run_vault_cli(vault_stack, "rewrap-keys")
    assert result.returncode == 0 and result.stdout.startswith("rewrapped: 0 keys"), result.stdout


async def _snapshot(url: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT 'dek' AS kind, version, wrapped_key, nonce, kek_label FROM vault.data_keys"
            " UNION ALL SELECT 'fp', 0, wrapped_key, nonce, kek_label FROM vault.fingerprint_key"
            " UNION ALL SELECT 'kek', version, NULL, NULL, label || ':' || state FROM vault.keks ORDER BY 1, 2")
    finally:
        await connection.close()
    return [tuple(row) for row in rows]


async def test_rewrap_with_a_missing_kek_fails_and_writes_nothing(vault_stack: Stack, isolated_vault_url: str):
    env = {"VAULT_DATABASE_URL": isolated_vault_url, "HSM_KEK_LABEL": f"iso-kek-{secrets.token_hex(4)}"}
    assert run_vault_cli(vault_stack, "rotate-key", **env).returncode == 0   # first start: v1, then v2
    assert run_vault_cli(vault_stack, "rotate-kek", **env).returncode == 0
    connection = await asyncpg.connect(isolated_vault_url)
    try:
        # Version 1 re-wraps fine, version 2 names a KEK the HSM does not hold: the whole run must roll back.
        await connection.execute("UPDATE vault.data_keys SET kek_label = 'vault-kek-gone' WHERE version = 2")
    finally:
        await connection.close()
    before = await _snapshot(isolated_vault_url)
    result = run_vault_cli(vault_stack, "rewrap-keys", "--destroy-retired", **env)
    assert result.returncode == 2
    assert "HSM key not found: label='vault-kek-gone'" in result.stderr
    assert "Traceback" not in result.stderr
    assert await _snapshot(isolated_vault_url) == before


async def test_tampered_wrapped_data_key_stops_the_vault_with_a_clear_error(vault_stack: Stack,
                                                                            isolated_vault_url: str):
    env = {"VAULT_DATABASE_URL": isolated_vault_url, "HSM_KEK_LABEL": f"iso-kek-{secrets.token_hex(4)}"}
    assert run_vault_cli(vault_stack, "rotate-key", **env).returncode == 0
    connection = await asyncpg.connect(isolated_vault_url)
    try:
        await connection.execute(
            "UPDATE vault.data_keys SET wrapped_key = set_byte(wrapped_key, 0, get_byte(wrapped_key, 0) # 1)"
            " WHERE version = 1")
    finally:
        await connection.close()
    before = await _snapshot(isolated_vault_url)
    for command in ("reencrypt", "rotate-key"):
        result = run_vault_cli(vault_stack, command, **env)
        assert result.returncode == 2, (command, result.stdout)
        assert "HSM unwrap failed" in result.stderr and "Traceback" not in result.stderr
    assert await _snapshot(isolated_vault_url) == before


async def test_wrong_pin_writes_nothing(vault_stack: Stack, isolated_vault_url: str, tmp_path):
    own = Stack(run_dir=tmp_path)
    hsm = own.init_hsm()   # a token of its own: failed logins never count against the shared token
    try:
        for command in ("rotate-kek", "rotate-key", "serve"):
            overrides = {**hsm.env(), "HSM_PIN": secrets.token_hex(8), "VAULT_DATABASE_URL": isolated_vault_url,
                         "VAULT_SOCKET": str(tmp_path / "v.sock"), "VAULT_CREDENTIAL": "x"}
            result = run_vault_cli(vault_stack, command, **overrides)
            assert result.returncode == 2 and "HSM login failed: wrong PIN" in result.stderr, command
    finally:
        own.stop()
    assert await _snapshot(isolated_vault_url) == []


def test_key_associated_data_matches_the_service():
    assert keks.dek_aad(7) == service.dek_aad(7)
    assert keks.FINGERPRINT_AAD == service.FINGERPRINT_AAD
