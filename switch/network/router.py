"""Which network carries a card, and the links to each network.

Brands route to the network of the same name when one is configured, otherwise to ``generic`` (an
ISO 8583:1987 acquirer host that takes Amex, Discover, JCB, Diners, UnionPay, Maestro). Each network has
one or more links per endpoint; a request goes to the ready link with the fewest requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from switch.config import NetworkConfig
from switch.iso.profiles import profile_for
from switch.network.link import Link, LinkDownError, Message, NetworkError

log = logging.getLogger(__name__)

FALLBACK_NETWORK = "generic"


class NoRouteError(NetworkError):
    """No ready link can take the request: nothing was sent, so the request may be retried."""

    retryable = True


class Networks:
    def __init__(self, configs: dict[str, NetworkConfig], late_handler: Callable[[str, Message], None]) -> None:
        self.configs = configs
        self.late_handler = late_handler
        self.links: dict[str, list[Link]] = {}

    async def start(self) -> None:
        """Open every link; a network that cannot be reached now keeps reconnecting in the background."""
        for name, config in self.configs.items():
            profile = profile_for(config.profile)
            links = []
            for endpoint in config.endpoints:
                for index in range(config.links_per_endpoint):
                    links.append(Link(endpoint.host, endpoint.port, profile, name=f"{name}#{index}",
                                      late_handler=self._late_for(name)))
            self.links[name] = links
        await asyncio.gather(*(self._start_link(link) for links in self.links.values() for link in links))

    def _late_for(self, network: str) -> Callable[[Message], None]:
        return lambda message: self.late_handler(network, message)

    @staticmethod
    async def _start_link(link: Link) -> None:
        try:
            await link.start()
        except LinkDownError as error:
            log.warning("link %s not up at start (%s); it keeps retrying", link.name, error)

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for links in self.links.values() for link in links))

    def route(self, brand: str) -> str:
        return brand if brand in self.configs else FALLBACK_NETWORK

    def ready(self) -> dict[str, bool]:
        return {name: any(link.ready for link in links) for name, links in self.links.items()}

    async def send(self, network: str, message: Message, timeout_s: float) -> Message:
        return await self.pick(network).request(message, timeout_s)

    def pick(self, network: str) -> Link:
        candidates = [link for link in self.links.get(network, ()) if link.ready]
        if not candidates:
            raise NoRouteError(f"no ready link to network {network}")
        return min(candidates, key=lambda link: link.pending)
