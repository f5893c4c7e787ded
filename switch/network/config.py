"""What the network layer needs to know of a card network: its profile and its endpoints."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from switch.iso.framing import FRAME_SIZE_MAX_DEFAULT


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    name: str
    profile: str
    endpoints: tuple[Endpoint, ...]
    links_per_endpoint: int = 1
    tls_ca_file: str = ""                   # TLS to this network's endpoints, verified against this CA


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """The tunables of one persistent network link (the same for every link of a pool)."""

    inflight_max: int = 2048                # requests awaiting an answer on the link
    echo_interval_s: float = 30.0           # idle time before a network management echo (0800/301)
    echo_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    sign_on_timeout_s: float = 5.0
    late_memory_s: float = 120.0            # how long an expired request's key still marks a reply as late
    late_memory_max: int = 100_000
    reconnect_delay_initial_s: float = 0.1  # exponential backoff with jitter, from here ...
    reconnect_delay_max_s: float = 10.0     # ... up to here
    frame_size_max: int = FRAME_SIZE_MAX_DEFAULT
    tls: ssl.SSLContext | None = None        # TLS on the connection (switch.common.tls.client_context)

    def __post_init__(self) -> None:
        assert self.inflight_max > 0 and self.late_memory_max > 0
        assert 0 < self.reconnect_delay_initial_s <= self.reconnect_delay_max_s
