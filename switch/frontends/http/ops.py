"""The operations endpoints, on their own port (loopback by default), never on the merchant port:
``/metrics`` (Prometheus), ``/readyz`` (each dependency, each network's endpoints and breakers) and
``/healthz``. They show the switch's insides, so no merchant and no stranger on the merchant network
should reach them."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
import redis.asyncio as redis

from switch.common import metrics
from switch.common.drain import Drain
from switch.common.errors import invalid_request
from switch.common.http import Request, Response
from switch.network.router import Networks
from switch.store import pool as store_pool
from switch.vault_client import VaultClient

READINESS_TIMEOUT_S = 1.0
HEALTHY = b'{"status":"ok"}'


class OpsApp:
    def __init__(self, pool: asyncpg.Pool, redis_client: redis.Redis, vault: VaultClient, networks: Networks,
                 drain: Drain | None = None) -> None:
        self.pool = pool
        self.drain = drain                  # the worker's: not ready while it stops
        self.redis = redis_client
        self.vault = vault
        self.networks = networks

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        route = request.path.lstrip("/") if request.path in ("/metrics", "/readyz", "/healthz") else "unknown"
        if request.method != "GET":
            error = invalid_request("method_not_allowed", "The operations endpoints answer GET only.", status=405)
            response = Response(error.status, error.body(""))
        elif request.path == "/metrics":
            response = Response(200, metrics.render(), content_type=metrics.CONTENT_TYPE)
        elif request.path == "/readyz":
            response = await self.readiness()
        elif request.path == "/healthz":
            response = Response(200, HEALTHY)
        else:
            error = invalid_request("not_found", "The operations port serves /metrics, /readyz and /healthz.",
                                    status=404)
            response = Response(error.status, error.body(""))
        metrics.observe_request(request.method, "ops." + route, response.status, time.perf_counter() - started)
        return response

    async def readiness(self) -> Response:
        checks = await asyncio.gather(store_pool.ping(self.pool, READINESS_TIMEOUT_S), self._check_redis(),
                                      self._check_vault(), return_exceptions=True)
        names = ("postgres", "redis", "vault")
        result: dict[str, object] = {name: check is True for name, check in zip(names, checks, strict=True)}
        networks = self.networks.ready()
        result["networks"] = networks
        # Per network: endpoints, breaker states, links up, and whether it runs degraded (e.g. on its backup).
        result["network_status"] = self.networks.status()
        stopping = self.drain is not None and self.drain.stopping
        ready = all(result[name] for name in names) and any(networks.values()) and not stopping
        result["status"] = "stopping" if stopping else "ready" if ready else "not_ready"
        return Response(200 if ready else 503, msgspec.json.encode(result))

    async def _check_redis(self) -> bool:
        return bool(await asyncio.wait_for(self.redis.ping(), READINESS_TIMEOUT_S))

    async def _check_vault(self) -> bool:
        return await asyncio.wait_for(self.vault.ping(), READINESS_TIMEOUT_S)
