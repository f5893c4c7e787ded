"""``vault`` command line. Configuration comes from the environment.

    serve                                   tokenize/detokenize on VAULT_SOCKET (+ POST /v1/tokens on
                                            VAULT_HTTP_PORT when set)
    rotate-key / reencrypt                  new data-key version; move ciphertexts to it
    rotate-kek / rewrap-keys                new HSM key-encryption key; re-wrap the stored keys under it
    publishable-keys create|revoke          pk_test_... keys for the public tokenization endpoint

VAULT_DATABASE_URL, HSM_MODULE, SOFTHSM2_CONF, HSM_TOKEN_LABEL, HSM_PIN (all commands but publishable-keys,
which needs only VAULT_DATABASE_URL); VAULT_SOCKET, VAULT_CREDENTIAL (serve); optional HSM_KEK_LABEL (the
first KEK's label on a fresh schema), VAULT_DB_POOL_MAX, VAULT_HTTP_HOST, VAULT_HTTP_RATE_PER_S,
VAULT_HTTP_BURST.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from switch.common.errors import ConfigError
from switch.vault_protocol import VaultError
from vault.hsm import Hsm, HsmError
from vault.keks import ensure_active_kek, rewrap, rotate_kek
from vault.publishable_keys import create_publishable_key, revoke_publishable_key
from vault.server import VaultConfig, open_vault, run_serve
from vault.service import REENCRYPT_BATCH_ROWS_DEFAULT, Vault, run_with_vault


def _one_shot(body: Callable[[Vault], Awaitable[tuple[str, int]]]) -> int:
    """Run one command against a started vault; print its result line and return its exit code."""

    async def run() -> tuple[str, int]:
        config = VaultConfig.from_env(need_socket=False)
        hsm, pool = await open_vault(config, pool_size_max=4)
        try:
            return await run_with_vault(pool, hsm, config.kek_label, body)
        finally:
            await pool.close()
            hsm.close()

    return _report(run)


def _kek_command(body: Callable[[asyncpg.Pool, Hsm], Awaitable[tuple[str, int]]]) -> int:
    """Run one KEK command with the HSM session and a small pool (no vault started: no key is unwrapped
    but the ones being re-wrapped)."""

    async def run() -> tuple[str, int]:
        config = VaultConfig.from_env(need_socket=False)
        hsm, pool = await open_vault(config, pool_size_max=2)
        try:
            await ensure_active_kek(pool, hsm, config.kek_label)
            return await body(pool, hsm)
        finally:
            await pool.close()
            hsm.close()

    return _report(run)


def _publishable_command(body: Callable[[asyncpg.Connection], Awaitable[tuple[str, int]]]) -> int:
    """Run one publishable-key command: it needs the vault database only, not the HSM."""

    async def run() -> tuple[str, int]:
        url = os.environ.get("VAULT_DATABASE_URL")
        if not url:
            raise ConfigError("missing environment variables: VAULT_DATABASE_URL")
        connection = await asyncpg.connect(url)
        try:
            return await body(connection)
        finally:
            await connection.close()

    return _report(run)


def _report(run: Callable[[], Coroutine[Any, Any, tuple[str, int]]]) -> int:
    try:
        message, exit_code = asyncio.run(run())
    except (ConfigError, HsmError, VaultError, ValueError) as exc:
        print(f"vault: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"vault: database unavailable: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(message, flush=True)
    return exit_code


async def _rotate_kek(pool: asyncpg.Pool, hsm: Hsm) -> tuple[str, int]:
    version, label = await rotate_kek(pool, hsm)
    return f"rotated: active key-encryption key version {version} ({label})", 0


async def _rotate(vault: Vault) -> tuple[str, int]:
    version = await vault.rotate()
    return f"rotated: active key version {version}", 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vault", description="Card vault: tokenization with HSM-held keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve tokenize/detokenize on VAULT_SOCKET")
    commands.add_parser("rotate-key", help="create a new active data-key version")
    reencrypt = commands.add_parser("reencrypt",
                                    help="move ciphertexts under old key versions to the active one")
    reencrypt.add_argument("--batch-rows", type=int, default=REENCRYPT_BATCH_ROWS_DEFAULT)
    commands.add_parser("rotate-kek", help="create a new key-encryption key in the HSM and make it active")
    rewrap_parser = commands.add_parser("rewrap-keys", help="re-wrap stored keys under the active KEK")
    rewrap_parser.add_argument("--destroy-retired", action="store_true",
                               help="then delete retired KEKs that no stored key uses from the HSM")
    publishable = commands.add_parser("publishable-keys", help="keys for the public tokenization endpoint")
    publishable_actions = publishable.add_subparsers(dest="action", required=True)
    publishable_create = publishable_actions.add_parser("create", help="print a new pk_test_... key once")
    publishable_create.add_argument("--merchant", required=True, help="the switch's merchant id (acct_...)")
    publishable_create.add_argument("--quiet", action="store_true", help="print only the key")
    publishable_revoke = publishable_actions.add_parser("revoke")
    publishable_revoke.add_argument("--key", required=True, help="the key id (pkid_...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return run_serve()
    if args.command == "rotate-key":
        return _one_shot(_rotate)
    if args.command == "rotate-kek":
        return _kek_command(_rotate_kek)
    if args.command == "rewrap-keys":

        async def _rewrap(pool: asyncpg.Pool, hsm: Hsm) -> tuple[str, int]:
            result = await rewrap(pool, hsm, destroy_retired=args.destroy_retired)
            destroyed = ", ".join(result.destroyed_labels) or "none"
            return (f"rewrapped: {result.rows_rewrapped} keys now under {result.active_label}; "
                    f"destroyed: {destroyed}"), 0

        return _kek_command(_rewrap)
    if args.command == "publishable-keys":
        return _publishable_command(lambda connection: _publishable(connection, args))

    async def _reencrypt(vault: Vault) -> tuple[str, int]:
        result = await vault.reencrypt(args.batch_rows)
        message = (f"reencrypted: {result.rows_moved} rows now under key version {result.active_version}; "
                   f"{result.rows_undecryptable} rows could not be decrypted")
        return message, int(result.rows_undecryptable > 0)

    return _one_shot(_reencrypt)


async def _publishable(connection: asyncpg.Connection, args: argparse.Namespace) -> tuple[str, int]:
    if args.action == "create":
        created = await create_publishable_key(connection, args.merchant)
        if args.quiet:
            return created.publishable_key, 0
        return (f"key id           {created.key_id}\nmerchant         {created.merchant_id}\n"
                f"publishable key  {created.publishable_key}\n"
                "Shown once and stored only as a hash: put it in the merchant's checkout page now."), 0
    revoked = await revoke_publishable_key(connection, args.key)
    return ("revoked" if revoked else "no such active key"), 0 if revoked else 1


if __name__ == "__main__":
    sys.exit(main())
