"""Control API: tiny JSON over HTTP/1.1 on loopback, for tests and drills. One request per connection.

Routes live in one table, so growing the API is adding a handler and a row.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acquirer_sim.server import Simulator

HEADER_BYTES_MAX = 8192
BODY_BYTES_MAX = 65_536
RECORDS_LIMIT_DEFAULT = 100
RECORDS_LIMIT_MAX = 1000
REQUEST_TIMEOUT_S = 5.0
RECORD_FILTERS = ("rrn", "stan", "card_last4", "network", "terminal_id", "mti", "effect")
HOLD_FILTERS = ("rrn", "stan", "card_last4", "terminal_id")

Reply = tuple[int, Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlApi:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.routes: dict[tuple[str, str], Callable[[dict[str, str], Any], Reply]] = {
            ("GET", "/records"): self.get_records,
            ("GET", "/stats"): self.get_stats,
            ("GET", "/holds"): self.get_holds,
            ("GET", "/behaviour"): self.get_behaviour,
            ("POST", "/behaviour"): self.post_behaviour,
        }
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=HEADER_BYTES_MAX)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    # Handlers.

    def get_records(self, query: dict[str, str], body: Any) -> Reply:
        filters = {key: query[key] for key in RECORD_FILTERS if key in query}
        records = self.simulator.records.query(limit=_limit(query), **filters)
        return 200, {"records": records, "records_max": self.simulator.records.records_max}

    def get_holds(self, query: dict[str, str], body: Any) -> Reply:
        """Holds outstanding (oldest first, at most `limit`), with the issuer's running totals: every hold
        placed is captured, released, expired or still outstanding."""
        issuer = self.simulator.issuer
        filters = {key: query[key] for key in HOLD_FILTERS if key in query}
        return 200, {"holds": issuer.holds(limit=_limit(query), **filters), **issuer.summary()}

    def get_stats(self, query: dict[str, str], body: Any) -> Reply:
        return 200, {name: network.stats.to_dict() for name, network in self.simulator.networks.items()}

    def get_behaviour(self, query: dict[str, str], body: Any) -> Reply:
        return 200, {
            name: _behaviour_dict(network.behaviour) for name, network in self.simulator.networks.items()
        }

    def post_behaviour(self, query: dict[str, str], body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ControlError(400, "body must be a JSON object")
        name = body.get("network")
        network = self.simulator.networks.get(name) if isinstance(name, str) else None
        if network is None:
            raise ControlError(400, f"network must be one of {sorted(self.simulator.networks)}")
        unknown = set(body) - {"network", "latency_ms", "drop_rate"}
        if unknown:
            raise ControlError(400, f"unknown fields {sorted(unknown)}")
        try:
            network.behaviour.update(body)
        except ValueError as error:
            raise ControlError(400, str(error)) from None
        return 200, {name: _behaviour_dict(network.behaviour)}

    # HTTP.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self._handle(reader), REQUEST_TIMEOUT_S)
        except ControlError as error:
            status, payload = error.status, {"error": str(error)}
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> Reply:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ControlError(400, "malformed request line")
        method, target, _ = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise ControlError(400, "bad Content-Length") from None
        if length > BODY_BYTES_MAX or length < 0:
            raise ControlError(413, f"body over {BODY_BYTES_MAX} bytes")
        body: Any = None
        if length:
            try:
                body = json.loads(await reader.readexactly(length))
            except ValueError:
                raise ControlError(400, "body is not JSON") from None
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        handler = self.routes.get((method, url.path))
        if handler is None:
            known_paths = {path for _, path in self.routes}
            raise ControlError(405 if url.path in known_paths else 404, f"no route {method} {url.path}")
        return handler(query, body)


def _limit(query: dict[str, str]) -> int:
    try:
        limit = int(query.get("limit", RECORDS_LIMIT_DEFAULT))
    except ValueError:
        raise ControlError(400, "limit must be an integer") from None
    return max(1, min(limit, RECORDS_LIMIT_MAX))


def _behaviour_dict(behaviour: Any) -> dict[str, Any]:
    return {"latency_ms": behaviour.latency_ms, "drop_rate": behaviour.drop_rate}
