"""The `switch` CLI against the harness's database: merchants, keys, ledger check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from loadtest.httpclient import Client

pytestmark = pytest.mark.integration


def run_cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **stack.switch_env()}, check=False)


async def test_merchant_key_is_shown_once_and_stored_as_a_hash(stack, db) -> None:
    result = run_cli(stack, "merchants", "create", "--name", "cli-shop")
    assert result.returncode == 0, result.stderr
    api_key = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("api key"))
    key_id = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("key id"))
    stored = await db.fetchrow("SELECT prefix, key_hash FROM api_keys WHERE id = $1", key_id)
    assert stored["prefix"] == api_key[:12]
    assert api_key.encode() not in stored["key_hash"]
    client = Client(stack.switch_url, api_key)
    try:
        assert (await client.request("GET", "/v1/payments")).status == 200
        assert run_cli(stack, "keys", "revoke", "--key", key_id).returncode == 0
        assert run_cli(stack, "keys", "revoke", "--key", key_id).returncode == 1
    finally:
        await client.close()


def execute(stack, *statements: str) -> None:
    """Run `statements` on the harness's database, one connection, in order."""
    async def run() -> None:
        conn = await asyncpg.connect(stack.database_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_ledger_check_passes_and_catches_an_unbalanced_posting(stack) -> None:
    assert run_cli(stack, "ledger", "check").returncode == 0
    execute(stack, "INSERT INTO ledger_entries (posting_id, account, amount, currency) "
                   "VALUES ('test:broken', 'test:account', 5, 'usd')")
    try:
        result = run_cli(stack, "ledger", "check")
        assert result.returncode == 1
        assert "UNBALANCED test:broken" in result.stdout
    finally:
        execute(stack, "DELETE FROM ledger_entries WHERE posting_id = 'test:broken'")


def test_ledger_check_catches_rows_naming_a_missing_merchant_or_payment(stack) -> None:
    """The tables a payment writes carry no foreign keys (schema.sql): the check is what finds an orphan."""
    assert run_cli(stack, "ledger", "check").returncode == 0
    execute(stack,
        "INSERT INTO payment_events (payment_id, type, to_status) VALUES ('pay_test_missing', 'test', 'failed')",
        "INSERT INTO ledger_entries (posting_id, payment_id, account, amount, currency) VALUES "
        "('test:orphan', 'pay_test_gone', 'test:a', 5, 'usd'), ('test:orphan', 'pay_test_gone', 'test:b', -5, 'usd')",
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_method, request_path, fingerprint) "
        "VALUES ('acct_test_missing', 'test-orphan-key', 'POST', '/v1/payments', '\\x00')")
    try:
        result = run_cli(stack, "ledger", "check")
        assert result.returncode == 1
        lines = [line for line in result.stdout.splitlines() if line.startswith("ORPHAN")]
        assert len(lines) == 4, result.stdout
        assert sum(line.startswith("ORPHAN payment_events ") and "names payment_id pay_test_missing," in line
                   for line in lines) == 1
        assert sum(line.startswith("ORPHAN ledger_entries ") and "names payment_id pay_test_gone," in line
                   for line in lines) == 2
        assert "ORPHAN idempotency_keys test-orphan-key names merchant_id acct_test_missing, which does not exist" \
            in lines
    finally:
        execute(stack, "DELETE FROM payment_events WHERE payment_id = 'pay_test_missing'",
                "DELETE FROM ledger_entries WHERE posting_id = 'test:orphan'",
                "DELETE FROM idempotency_keys WHERE merchant_id = 'acct_test_missing'")
    assert run_cli(stack, "ledger", "check").returncode == 0
