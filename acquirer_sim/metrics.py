"""Prometheus metrics of the simulator, read from its counters at scrape time.

The message path only bumps plain Counters in `NetworkStats`; this collector turns them into metric
families when `/metrics` is scraped, so metrics cost nothing per message. Labels are bounded sets:
network, MTI, field 39, effect and fault names; never card data or ids.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from acquirer_sim.server import Simulator

CONTENT_TYPE = CONTENT_TYPE_LATEST


class SimulatorCollector(Collector):
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def collect(self) -> Iterator[Metric]:
        networks = self.simulator.networks
        messages = CounterMetricFamily(
            "acquirer_sim_messages", "Messages received, by network, request MTI and response code (field 39)",
            labels=["network", "mti", "response_code"],
        )  # fmt: skip
        effects = CounterMetricFamily(
            "acquirer_sim_effects", "What messages did to the issuer's books", labels=["network", "effect"]
        )
        faults = CounterMetricFamily("acquirer_sim_faults", "Faults injected", labels=["network", "fault"])
        errors = CounterMetricFamily(
            "acquirer_sim_wire_errors", "Frames that could not be framed or decoded", labels=["network", "kind"]
        )
        connections = CounterMetricFamily("acquirer_sim_connections", "Connections accepted", labels=["network"])
        connections_open = GaugeMetricFamily("acquirer_sim_connections_open", "Connections open", labels=["network"])
        delayed = GaugeMetricFamily(
            "acquirer_sim_delayed_answers", "Answers held back by latency knobs", labels=["network"]
        )
        for name, network in networks.items():
            stats = network.stats
            for (mti, field39), count in stats.by_response.items():
                messages.add_metric([name, mti, field39], count)
            for effect, count in stats.by_effect.items():
                effects.add_metric([name, effect], count)
            for fault, count in stats.by_fault.items():
                faults.add_metric([name, fault], count)
            errors.add_metric([name, "framing"], stats.framing_errors)
            errors.add_metric([name, "decode"], stats.decode_errors)
            connections.add_metric([name], stats.connections)
            connections_open.add_metric([name], stats.connections_open)
            delayed.add_metric([name], stats.delayed_pending)
        yield from (messages, effects, faults, errors, connections, connections_open, delayed)
        issuer = self.simulator.issuer
        yield GaugeMetricFamily("acquirer_sim_holds_outstanding", "Holds not yet captured or released",
                                value=issuer.summary()["holds_outstanding"])  # fmt: skip
        yield GaugeMetricFamily("acquirer_sim_held_outstanding_minor", "Sum of outstanding holds, minor units",
                                value=issuer.held_outstanding_minor)  # fmt: skip
        yield CounterMetricFamily("acquirer_sim_settlement_dropped", "Cleared items forgotten before a cut-off",
                                  value=issuer.unsettled_dropped)  # fmt: skip


def registry_for(simulator: Simulator) -> CollectorRegistry:
    """A registry of its own per simulator, so several can live in one test process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SimulatorCollector(simulator))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
