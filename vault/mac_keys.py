"""MAC session keys for the switch's network links, derived inside the HSM.

Each card network (zone) has a MAC master key in the token, imported once from a key file the stack
runner writes (``VAULT_MAC_KEYS_FILE``, a JSON object of network -> hex key, mode 0600) and from then on
only usable for CMAC inside the HSM. A session key is the SP 800-108 counter-mode KDF with AES-CMAC as the
PRF (``switch.iso.mac.kdf_input``): one HSM call per link sign-on, never one per message. The far end (the
simulator) holds its own copy of the master key and derives the same session key in software.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Mapping

from switch.iso.mac import MacKeyError, cmac_full, kdf_input, parse_master_keys
from switch.vault_protocol import VaultError
from vault.hsm import Hsm, HsmError, HsmKeyNotFound, mac_master_label

log = logging.getLogger("vault.mac_keys")

# A fixed input whose CMAC under the token's key and under the file's key must agree: it proves a key
# already in the token is the one in the file without the key leaving either place.
CHECK_INPUT = b"vault:mac-master-key-check"


def read_master_keys(path: str) -> Mapping[str, bytes]:
    """The key file's keys. Raises HsmError (the vault's start-up error) naming no key."""
    try:
        with open(path) as handle:
            mode = os.fstat(handle.fileno()).st_mode
            keys = parse_master_keys(handle.read())
    except OSError as exc:
        raise HsmError(f"MAC master key file unreadable: {type(exc).__name__}") from None
    except MacKeyError as exc:
        raise HsmError(str(exc)) from None
    if mode & 0o077:
        log.warning("MAC master key file is readable by group or others; it should be mode 0600")
    return keys


class MacKeys:
    """Derives MAC session keys from the networks' master keys in the HSM. Its repr shows no keys."""

    def __init__(self, hsm: Hsm) -> None:
        self._hsm = hsm
        self.networks: list[str] = []

    def __repr__(self) -> str:
        return f"MacKeys(networks={self.networks})"

    async def start(self, key_file: str | None) -> None:
        """Import the master keys of `key_file` that the token lacks; check the ones it already holds."""
        if not key_file:
            return
        keys = await asyncio.to_thread(read_master_keys, key_file)
        imported = []
        for network, material in keys.items():
            label = mac_master_label(network)
            if await asyncio.to_thread(self._hsm.import_mac_master_key, label, material):
                imported.append(network)
            token_check = await asyncio.to_thread(self._hsm.mac_master_cmac, label, CHECK_INPUT)
            if not hmac.compare_digest(token_check, cmac_full(material, CHECK_INPUT)):
                raise HsmError(f"MAC master key for {network} in the HSM differs from the key file")
        self.networks = sorted(keys)
        log.info("MAC master keys for %s (imported now: %s)", self.networks, imported or "none")

    async def session_key(self, network: str, generation: int) -> bytes:
        """The 16-byte session key of (network, generation). Raises VaultError."""
        try:
            data = kdf_input(network, generation)
        except MacKeyError:
            raise VaultError("invalid_request") from None
        try:
            return await asyncio.to_thread(self._hsm.mac_master_cmac, mac_master_label(network), data)
        except HsmKeyNotFound:
            raise VaultError("not_found") from None
        except HsmError as exc:
            log.error("MAC key derivation failed: %s", exc)
            raise VaultError("unavailable") from None
