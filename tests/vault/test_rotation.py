"""Key rotation and re-encryption while tokenize and detokenize keep running: no decrypt ever fails."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from switch.common.cards import CardNumber
from switch.dev.devstack import REPO_ROOT
from tests.vault.conftest import make_pan, vault_env


async def _cli(stack, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vault", *args, env=vault_env(stack), cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, stdout.decode(), stderr.decode()


DETOKENIZE_BATCH = 500


async def test_rotate_and_reencrypt_under_load(vault_stack, vault_client, vault_db):
    merchant = "m_rotate"
    cards = {}
    for _ in range(4):
        pans = [make_pan("545454") for _ in range(100)]
        infos = await asyncio.gather(*(vault_client.tokenize(merchant, CardNumber(p), 7, 2033, None)
                                       for p in pans))
        cards.update({info.token: pan for info, pan in zip(infos, pans, strict=True)})
    failures: list[BaseException] = []
    stop = asyncio.Event()
    operations = [0]

    async def load() -> None:
        tokens = list(cards)
        index = 0
        while not stop.is_set():
            try:
                pan = make_pan("545454")
                info = await vault_client.tokenize(merchant, CardNumber(pan), 7, 2033, None)
                cards[info.token] = pan
                token = tokens[index % len(tokens)]
                card = await vault_client.detokenize(merchant, token)
                assert card.number.reveal() == cards[token]
                operations[0] += 2
            except BaseException as exc:  # noqa: BLE001 - every failure is a test failure
                failures.append(exc)
            index += 1

    workers = [asyncio.create_task(load()) for _ in range(8)]
    try:
        code, out, err = await _cli(vault_stack, "rotate-key")
        assert code == 0, err
        new_version = int(out.strip().rsplit(" ", 1)[1])
        # The vault hears about the rotation (LISTEN/NOTIFY); new tokens then use the new version.
        for _ in range(100):
            probe = await vault_client.tokenize(merchant, CardNumber(make_pan("545454")), 7, 2033, None)
            version = await vault_db.fetchval(
                "SELECT key_version FROM vault.tokens WHERE id = $1", probe.token)
            if version == new_version:
                break
            await asyncio.sleep(0.05)
        assert version == new_version
        code, out, err = await _cli(vault_stack, "reencrypt", "--batch-rows", "37")
        # Exit code 1 only flags rows other tests tampered with on purpose; ours are checked below.
        assert code in (0, 1), err
        assert out.startswith("reencrypted: ")
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert not failures, failures[:3]
    assert operations[0] > 100
    stale = await vault_db.fetchval(
        "SELECT count(*) FROM vault.tokens WHERE merchant_id = $1 AND key_version <> $2",
        merchant, new_version)
    assert stale == 0
    # Every card still reads back, a bounded batch at a time: the load above stores as many cards as the
    # machine's speed allows (3,000 alone, over 4,096 in a busy full run), and the client refuses more than
    # 4,096 requests in flight.
    tokens = list(cards)
    for start in range(0, len(tokens), DETOKENIZE_BATCH):
        batch = tokens[start:start + DETOKENIZE_BATCH]
        results = await asyncio.gather(*(vault_client.detokenize(merchant, token) for token in batch))
        assert [card.number.reveal() for card in results] == [cards[token] for token in batch]


async def test_a_data_key_is_never_deleted_or_renumbered(vault_stack, vault_db):
    """Tokens name their data key by version without a foreign key (vault/schema.sql); what it guarded, a
    token left naming a key that is gone, the schema still refuses."""
    version = await vault_db.fetchval("SELECT max(version) FROM vault.data_keys")
    refused = ("DELETE FROM vault.data_keys WHERE version = $1", "TRUNCATE vault.data_keys CASCADE",
               "UPDATE vault.data_keys SET version = version + 1000 WHERE version = $1")
    for statement in refused:
        with pytest.raises(asyncpg.RaiseError, match="never deleted or renumbered"):
            await vault_db.execute(statement, *([version] if "$1" in statement else []))
    assert await vault_db.fetchval("SELECT count(*) FROM vault.data_keys WHERE version = $1", version) == 1
    await vault_db.execute("UPDATE vault.data_keys SET created_at = created_at WHERE version = $1", version)
