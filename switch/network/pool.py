"""Pool: the links of one network, over a primary endpoint and backups, each behind a circuit breaker.

Endpoints are tried in configured order (the first is the primary, the rest are backups in order of
preference). A request goes to the best endpoint that has a ready link and whose breaker lets it
through, on that endpoint's ready link with the fewest requests in flight. So traffic fails over to a
backup while the primary's breaker is open or its links are down, and fails back by itself when the
primary's half-open trials succeed.

Deadlines are budgets: the caller's `timeout_s` is spent across attempts and the remainder is the link
timeout. Only a request refused before it was written (link not ready, busy, paused) may go to another
link; a request that may have reached the network (timeout, disconnect mid-flight) is never resent
here: its error says `retryable = False` and the caller reverses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from switch.iso.profiles import Profile
from switch.network import metrics
from switch.network.breaker import BreakerConfig, BreakerState, CircuitBreaker, Outcome, Permit
from switch.network.config import Endpoint, LinkConfig
from switch.network.link import (
    DEFAULT_LINK_CONFIG,
    Link,
    LinkDownError,
    LinkTimeoutError,
    MacKeyProvider,
    Message,
    NetworkError,
)

logger = logging.getLogger(__name__)

ROLE_PRIMARY = "primary"
ROLE_BACKUP = "backup"
# Links one request may be refused by (before sending) before the pool gives up on it.
REFUSALS_MAX = 8
SAMPLE_INTERVAL_S = 1.0


class NoRouteError(NetworkError):
    """No link can take the request now: nothing was sent, so it may be retried (here or later)."""

    retryable = True


class PoolEndpoint:
    """One endpoint of a pool: its links, its breaker and its metrics."""

    def __init__(self, network: str, endpoint: Endpoint, role: str, breaker_config: BreakerConfig,
                 clock: Callable[[], float]) -> None:
        self.address = f"{endpoint.host}:{endpoint.port}"
        self.endpoint = endpoint
        self.role = role
        self.metrics = metrics.LinkMetrics(network, self.address)
        self.breaker = CircuitBreaker(breaker_config, clock=clock, on_change=self._breaker_changed)
        self.links: list[Link] = []
        self.metrics.breaker_state.set(BreakerState.CLOSED)

    def least_loaded(self, excluded: Sequence[Link] = ()) -> Link | None:
        """The ready, unpaused link with the fewest requests in flight."""
        best: Link | None = None
        for link in self.links:
            if link.ready and not link.paused and (best is None or link.pending < best.pending):
                if link not in excluded:
                    best = link
        return best

    @property
    def links_ready(self) -> int:
        return sum(1 for link in self.links if link.ready)

    @property
    def usable(self) -> bool:
        return self.links_ready > 0 and self.breaker.available()

    @property
    def healthy(self) -> bool:
        return self.links_ready == len(self.links) and self.breaker.state is BreakerState.CLOSED

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.address,
            "role": self.role,
            "breaker": self.breaker.state.label,
            "links": len(self.links),
            "links_ready": self.links_ready,
            "in_flight": sum(link.pending for link in self.links),
        }

    def _breaker_changed(self, previous: BreakerState, state: BreakerState) -> None:
        self.metrics.breaker_changed(state, state.label)
        log = logger.info if state is BreakerState.CLOSED else logger.warning
        log("endpoint %s (%s): breaker %s -> %s", self.address, self.role, previous.label, state.label)


class Pool:
    """Create, `await start()`, then `request()`; `status()` says which endpoints serve and why."""

    def __init__(
        self,
        network: str,
        profile: Profile,
        endpoints: Sequence[Endpoint],
        *,
        late_handler: Callable[[Message], None],
        links_per_endpoint: int = 1,
        breaker_config: BreakerConfig | None = None,
        link_config: LinkConfig | None = None,
        mac_key_provider: MacKeyProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        assert endpoints, "a pool needs at least one endpoint"
        assert links_per_endpoint > 0
        self.network = network
        self.profile = profile
        self._sample_interval_s = sample_interval_s
        self._no_route = metrics.no_route.labels(network)
        self._sampler: asyncio.Task[None] | None = None
        config = breaker_config or BreakerConfig()
        self.endpoints: list[PoolEndpoint] = []
        for index, endpoint in enumerate(endpoints):
            member = PoolEndpoint(network, endpoint, ROLE_PRIMARY if index == 0 else ROLE_BACKUP, config, clock)
            member.links = [
                Link(endpoint.host, endpoint.port, profile, late_handler=late_handler,
                     name=f"{network}@{member.address}#{number}", metrics=member.metrics,
                     on_connect_failed=member.breaker.record_connect_failure,
                     config=link_config or DEFAULT_LINK_CONFIG, mac_key_provider=mac_key_provider)
                for number in range(links_per_endpoint)
            ]
            self.endpoints.append(member)

    @property
    def links(self) -> list[Link]:
        return [link for member in self.endpoints for link in member.links]

    async def start(self) -> None:
        """Connect every link; one that cannot connect now keeps trying in the background."""
        await asyncio.gather(*(self._start_link(link) for link in self.links))
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    @staticmethod
    async def _start_link(link: Link) -> None:
        try:
            await link.start(reconnect_on_failure=True)
        except LinkDownError as error:
            logger.warning("%s; it keeps retrying", error)

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self.links))

    # Requests.

    async def request(self, message: Message, timeout_s: float) -> Message:
        """Send on the best link and return the response, within `timeout_s` overall.

        Raises NoRouteError (retryable: nothing sent), LinkTimeoutError or LinkDownError with
        retryable=False (the outcome is unknown), DuplicateKeyError, or IsoError for a bad message.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        refused: list[Link] = []
        while True:
            member, link, permit = self._choose(refused)
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                member.breaker.record(permit, Outcome.NOT_SENT)
                self._no_route.inc()
                raise NoRouteError(f"network {self.network}: budget spent before a link took the request")
            outcome = Outcome.NOT_SENT
            try:
                response = await link.request(message, remaining_s)
                outcome = Outcome.SUCCESS
                return response
            except LinkTimeoutError:
                outcome = Outcome.TIMEOUT
                raise
            except NetworkError as error:
                if not error.retryable:
                    # Sent and then the connection failed; a duplicate key says nothing of the endpoint.
                    outcome = Outcome.FAILURE if isinstance(error, LinkDownError) else Outcome.NOT_SENT
                    raise
                refused.append(link)
                if len(refused) >= REFUSALS_MAX:
                    self._no_route.inc()
                    raise NoRouteError(f"network {self.network}: {len(refused)} links refused the request") from None
            finally:
                member.breaker.record(permit, outcome)

    def _choose(self, refused: Sequence[Link]) -> tuple[PoolEndpoint, Link, Permit]:
        for member in self.endpoints:
            link = member.least_loaded(refused)
            if link is None:
                continue
            permit = member.breaker.acquire()
            if permit is not None:
                return member, link, permit
        self._no_route.inc()
        raise NoRouteError(f"network {self.network}: no ready link behind a closed breaker")

    # Observing.

    @property
    def ready(self) -> bool:
        """Some endpoint can take requests now."""
        return any(member.usable for member in self.endpoints)

    @property
    def degraded(self) -> bool:
        """Serving with less than everything configured: a link down or a breaker not closed."""
        return not all(member.healthy for member in self.endpoints)

    def status(self) -> dict[str, Any]:
        active = next((member.address for member in self.endpoints if member.usable), None)
        return {
            "ready": active is not None,
            "degraded": self.degraded,
            "active": active,
            "endpoints": [member.status() for member in self.endpoints],
        }

    async def _sample(self) -> None:
        """Move the in-flight gauges once per interval instead of twice per message."""
        while True:
            for member in self.endpoints:
                member.metrics.in_flight.set(sum(link.pending for link in member.links))
            await asyncio.sleep(self._sample_interval_s)
