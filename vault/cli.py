"""``vault`` command line: ``serve``, ``rotate-key``, ``reencrypt``. Configuration comes from the environment.

VAULT_DATABASE_URL, HSM_MODULE, SOFTHSM2_CONF, HSM_TOKEN_LABEL, HSM_PIN (all commands);
VAULT_SOCKET, VAULT_CREDENTIAL (serve); optional HSM_KEK_LABEL, VAULT_DB_POOL_MAX.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from vault.hsm import HsmError
from vault.server import ConfigError, VaultConfig, open_vault, run_serve
from vault.service import REENCRYPT_BATCH_ROWS_DEFAULT, Vault, VaultError, run_with_vault


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

    try:
        message, exit_code = asyncio.run(run())
    except (ConfigError, HsmError, VaultError) as exc:
        print(f"vault: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"vault: database unavailable: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(message, flush=True)
    return exit_code


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return run_serve()
    if args.command == "rotate-key":
        return _one_shot(_rotate)

    async def _reencrypt(vault: Vault) -> tuple[str, int]:
        result = await vault.reencrypt(args.batch_rows)
        message = (f"reencrypted: {result.rows_moved} rows now under key version {result.active_version}; "
                   f"{result.rows_undecryptable} rows could not be decrypted")
        return message, int(result.rows_undecryptable > 0)

    return _one_shot(_reencrypt)


if __name__ == "__main__":
    sys.exit(main())
