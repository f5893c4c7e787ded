"""Control API: tiny JSON over HTTP/1.1 on loopback, for tests and drills. One request per connection.

Routes live in one table, so growing the API is adding a handler and a row.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acquirer_sim import metrics
from acquirer_sim.behaviour import BehaviourError
from acquirer_sim.scenario import ScenarioError, ScenarioRunner, scenario_from
from acquirer_sim.server import Simulator
from acquirer_sim.settlement import PLANT_KINDS, PLANT_MAX, Settlement

HEADER_BYTES_MAX = 8192
BODY_BYTES_MAX = 65_536
RECORDS_LIMIT_DEFAULT = 100
RECORDS_LIMIT_MAX = 1000
REQUEST_TIMEOUT_S = 5.0
RECORD_FILTERS = ("rrn", "stan", "card_last4", "network", "terminal_id", "mti", "effect")
HOLD_FILTERS = ("rrn", "stan", "card_last4", "terminal_id")
SUMMARY_FILTERS = ("rrn", "stan", "card_last4", "terminal_id", "network")
SUMMARY_TRANSACTIONS_MAX = 1_000_000
SETTLEMENT_DIR_DEFAULT = Path("settlement")

Reply = tuple[int, Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlApi:
    def __init__(
        self,
        simulator: Simulator,
        settlement: Settlement | None = None,
        scenarios: ScenarioRunner | None = None,
    ) -> None:
        self.simulator = simulator
        self.settlement = settlement or Settlement(simulator.issuer, simulator.networks, SETTLEMENT_DIR_DEFAULT)
        self.scenarios = scenarios or ScenarioRunner(self._apply_step)
        self.metrics_registry = metrics.registry_for(simulator)
        self.routes: dict[tuple[str, str], Callable[[dict[str, str], Any], Reply]] = {
            ("GET", "/records"): self.get_records,
            ("GET", "/stats"): self.get_stats,
            ("GET", "/holds"): self.get_holds,
            ("GET", "/behaviour"): self.get_behaviour,
            ("POST", "/behaviour"): self.post_behaviour,
            ("GET", "/summary"): self.get_summary,
            ("GET", "/scenario"): self.get_scenario,
            ("POST", "/scenario"): self.post_scenario,
            ("DELETE", "/scenario"): self.delete_scenario,
            ("GET", "/settlement"): self.get_settlement,
            ("POST", "/settlement"): self.post_settlement,
            ("GET", "/metrics"): self.get_metrics,
        }
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=HEADER_BYTES_MAX)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.scenarios.stop()
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
        return 200, {name: network.behaviour.to_dict() for name, network in self.simulator.networks.items()}

    def post_behaviour(self, query: dict[str, str], body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ControlError(400, "body must be a JSON object")
        name = body.get("network")
        network = self.simulator.networks.get(name) if isinstance(name, str) else None
        if network is None:
            raise ControlError(400, f"network must be one of {sorted(self.simulator.networks)}")
        changes = {key: value for key, value in body.items() if key != "network"}
        try:
            behaviour = network.set_behaviour(changes)
        except BehaviourError as error:
            raise ControlError(400, str(error)) from None
        return 200, {name: behaviour.to_dict()}

    def _apply_step(self, name: str, changes: dict[str, Any]) -> None:
        self.simulator.networks[name].set_behaviour(changes)

    def get_summary(self, query: dict[str, str], body: Any) -> Reply:
        """The drill's proof, per RRN: how many live charges (approved 0100/0200 purchases not fully
        reversed; more than one is a double charge), what was taken, credited and is still held. Built
        from the issuer's remembered transactions (bounded by its duplicates_max) plus the effects of the
        records still in memory."""
        filters = {key: query[key] for key in SUMMARY_FILTERS if key in query}
        transactions = self.simulator.issuer.transactions(limit=SUMMARY_TRANSACTIONS_MAX, **filters)
        by_rrn: dict[str, dict[str, int]] = {}
        holds = []
        for txn in transactions:
            entry = by_rrn.setdefault(txn["rrn"], dict.fromkeys(
                ("originals", "charges", "charged_minor", "refunded_minor", "held_minor"), 0
            ))  # fmt: skip
            entry["originals"] += 1
            approved = txn["field39"] == "00"
            if approved and txn["kind"] != "refund" and txn["reversed_to"] != 0:
                entry["charges"] += 1
            entry["refunded_minor" if txn["kind"] == "refund" else "charged_minor"] += txn["moved_minor"]
            entry["held_minor"] += txn["held_minor"]
            if txn["held_minor"]:
                holds.append(txn)
        charged_twice = sorted(rrn for rrn, entry in by_rrn.items() if entry["charges"] > 1)
        records = self.simulator.records.query(limit=self.simulator.records.records_max, **filters)
        limit = _limit(query)
        return 200, {
            "filters": filters,
            "transactions": len(transactions),
            "charged_once": not charged_twice,
            "charged_more_than_once": charged_twice[:limit],
            "every_hold_resolved": not holds,
            "holds_outstanding": holds[:limit],
            "by_rrn": dict(list(by_rrn.items())[:limit]),
            "effects": dict(Counter(record["effect"] for record in records)),
        }

    def get_scenario(self, query: dict[str, str], body: Any) -> Reply:
        return 200, self.scenarios.status()

    def post_scenario(self, query: dict[str, str], body: Any) -> Reply:
        """Start a scenario (the JSON form of a scenario file); replaces any scenario running."""
        try:
            scenario = scenario_from(body, self.simulator.networks)
        except ScenarioError as error:
            raise ControlError(400, str(error)) from None
        self.scenarios.start(scenario)
        return 200, self.scenarios.status()

    def delete_scenario(self, query: dict[str, str], body: Any) -> Reply:
        """Stop the scenario running; the behaviour it set stays."""
        self.scenarios.stop()
        return 200, self.scenarios.status()

    def get_settlement(self, query: dict[str, str], body: Any) -> Reply:
        settlement = self.settlement
        return 200, {
            "directory": str(settlement.directory.resolve()),
            "cut_offs": settlement.cut_offs,
            "last_files": settlement.last_files,
            "dropped": self.simulator.issuer.unsettled_dropped,
            "planted": self.settlement.planted,
        }

    def post_settlement(self, query: dict[str, str], body: Any) -> Reply:
        """Cut off now: one file per network of what cleared since the last cut-off. With
        {"plant": {"amount": 2, ...}, "seed": 7} the files carry those discrepancies (PLANT_KINDS), and
        the answer lists each one planted."""
        plan, seed = _plant_plan(body)
        try:
            paths, planted = self.settlement.cut_off(plan=plan, seed=seed)
        except OSError as error:
            raise ControlError(500, f"settlement files not written: {error.strerror}") from None
        return 200, {"files": [str(path) for path in paths], "cut_offs": self.settlement.cut_offs, "planted": planted}

    def get_metrics(self, query: dict[str, str], body: Any) -> Reply:
        return 200, metrics.render(self.metrics_registry)

    # HTTP.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self._handle(reader), REQUEST_TIMEOUT_S)
        except ControlError as error:
            status, payload = error.status, {"error": str(error)}
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if isinstance(payload, bytes):
            body, content_type = payload, metrics.CONTENT_TYPE
        else:
            body, content_type = json.dumps(payload).encode(), "application/json"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
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


def _plant_plan(body: Any) -> tuple[dict[str, int] | None, int]:
    """The discrepancies a POST /settlement asks for: ({kind: count}, seed), or (None, 0)."""
    if not isinstance(body, dict) or "plant" not in body:
        return None, 0
    plan, seed = body["plant"], body.get("seed", 0)
    if (not isinstance(plan, dict) or not set(plan) <= set(PLANT_KINDS) or not isinstance(seed, int)
            or not all(isinstance(n, int) and 0 <= n <= PLANT_MAX for n in plan.values())):
        raise ControlError(400, f"plant is {{kind: count}} with kinds {list(PLANT_KINDS)}, counts 0 to {PLANT_MAX},"
                                " and seed an integer")
    return plan, seed
