"""The vault's operations port: ``GET /metrics`` (Prometheus) and ``GET /healthz``.

Served (``switch.common.http``) only when ``VAULT_OPS_PORT`` is set, on ``VAULT_OPS_HOST`` (127.0.0.1 by
default): it shows the vault's insides, so it is never on the public tokenization port and never on a
merchant-facing address. Nothing here reads card data; the metrics are ``vault.metrics``'.
"""

from __future__ import annotations

import asyncio
import logging
import os

from prometheus_client import CollectorRegistry

from switch.common.errors import ConfigError, invalid_request
from switch.common.http import Request, Response, serve
from vault import metrics

log = logging.getLogger("vault.ops")

HEALTHY = b'{"status":"ok"}'


class OpsApp:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def handle(self, request: Request) -> Response:
        if request.method != "GET":
            error = invalid_request("method_not_allowed", "The operations endpoints answer GET only.", status=405)
            return Response(error.status, error.body(""))
        if request.path == "/metrics":
            return Response(200, metrics.render(self._registry), content_type=metrics.CONTENT_TYPE)
        if request.path == "/healthz":
            return Response(200, HEALTHY)
        error = invalid_request("not_found", "The operations port serves /metrics and /healthz.", status=404)
        return Response(error.status, error.body(""))


def ops_address(environ: dict[str, str]) -> tuple[str, int] | None:
    """(host, port) from VAULT_OPS_HOST and VAULT_OPS_PORT; None when VAULT_OPS_PORT is not set."""
    raw = environ.get("VAULT_OPS_PORT", "")
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > 65535:
        raise ConfigError("VAULT_OPS_PORT must be a port number (0 to 65535)")
    return environ.get("VAULT_OPS_HOST") or "127.0.0.1", int(raw)


async def start_ops_server(registry: CollectorRegistry,
                           environ: dict[str, str] | None = None) -> asyncio.Server | None:
    """Serve /metrics and /healthz when VAULT_OPS_PORT is set; None otherwise."""
    address = ops_address(dict(os.environ if environ is None else environ))
    if address is None:
        return None
    host, port = address
    server = await serve(OpsApp(registry).handle, host, port, reuse_port=False)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"VAULT OPS READY url=http://{host}:{bound_port}", flush=True)
    log.info("operations endpoints (/metrics, /healthz) on http://%s:%d", host, bound_port)
    return server
