"""What the network layer needs to know of a card network: its profile and its endpoints."""

from __future__ import annotations

from dataclasses import dataclass


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
