"""Which network carries a card, and the pool of links to each network.

Brands route to the network of the same name when one is configured, otherwise to ``generic`` (an
ISO 8583:1987 acquirer host that takes Amex, Discover, JCB, Diners, UnionPay, Maestro). Each network
has one `Pool`: several links per endpoint, a primary endpoint and backups, a breaker per endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from switch.common.tls import client_context
from switch.iso.profiles import profile_for
from switch.network.breaker import BreakerConfig
from switch.network.config import LinkConfig, NetworkConfig
from switch.network.link import MacKeyProvider, Message
from switch.network.pool import NoRouteError, Pool

__all__ = ["FALLBACK_NETWORK", "Networks", "NoRouteError"]

FALLBACK_NETWORK = "generic"

# (network, key generation) -> that generation's MAC session key; the worker wires it to the vault.
MacKeySource = Callable[[str, int], Awaitable[bytes]]


class Networks:
    def __init__(
        self,
        configs: dict[str, NetworkConfig],
        late_handler: Callable[[str, Message], None],
        *,
        breaker_config: BreakerConfig | None = None,
        link_config: LinkConfig | None = None,
        mac_key_source: MacKeySource | None = None,
    ) -> None:
        self.configs = configs
        self.late_handler = late_handler
        self.pools: dict[str, Pool] = {
            name: Pool(name, profile_for(config.profile), config.endpoints, late_handler=self._late_for(name),
                       links_per_endpoint=config.links_per_endpoint, breaker_config=breaker_config,
                       link_config=_with_tls(link_config, config),
                       mac_key_provider=_mac_keys_of(mac_key_source, name))
            for name, config in configs.items()
        }

    async def start(self) -> None:
        """Open every link; a network that cannot be reached now keeps reconnecting in the background."""
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))

    def _late_for(self, network: str) -> Callable[[Message], None]:
        return lambda message: self.late_handler(network, message)

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    def route(self, brand: str) -> str:
        return brand if brand in self.configs else FALLBACK_NETWORK

    def ready(self) -> dict[str, bool]:
        return {name: pool.ready for name, pool in self.pools.items()}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per network: ready, degraded, the endpoint serving now, and each endpoint's links and breaker."""
        return {name: pool.status() for name, pool in self.pools.items()}

    async def send(self, network: str, message: Message, timeout_s: float) -> Message:
        pool = self.pools.get(network)
        if pool is None:
            raise NoRouteError(f"no network named {network!r} is configured")
        return await pool.request(message, timeout_s)


def _with_tls(link_config: LinkConfig | None, network: NetworkConfig) -> LinkConfig | None:
    """The network's links over TLS when its configuration names the CA to verify it against."""
    if not network.tls_ca_file:
        return link_config
    return dataclasses.replace(link_config or LinkConfig(), tls=client_context(network.tls_ca_file))


def _mac_keys_of(source: MacKeySource | None, network: str) -> MacKeyProvider | None:
    """Each link of `network` asks `source` for its session keys, bound to the network's name (its zone)."""
    return None if source is None else functools.partial(source, network)
