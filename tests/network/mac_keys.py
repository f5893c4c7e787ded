"""MAC master keys for network tests: the in-process simulator holds them, and links get session keys
derived from them in software (the switch's real provider asks the vault, tested in tests/vault)."""

import secrets

from switch.iso.mac import MASTER_KEY_BYTES, derive_session_key

MASTER_KEYS = {name: secrets.token_bytes(MASTER_KEY_BYTES) for name in ("visa", "mastercard", "generic")}


class KeyProvider:
    """A link's `mac_key_provider` for one network: generation -> session key. Remembers what it was asked."""

    def __init__(self, network: str, master_key: bytes | None = None) -> None:
        self.network = network
        self.master_key = MASTER_KEYS[network] if master_key is None else master_key
        self.generations: list[int] = []

    async def __call__(self, generation: int) -> bytes:
        self.generations.append(generation)
        return derive_session_key(self.master_key, self.network, generation)


def key_provider(network: str) -> KeyProvider:
    return KeyProvider(network)
