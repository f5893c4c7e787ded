"""Prometheus metrics of the network layer, per network and endpoint ("host:port").

Labels are bounded sets: network and endpoint come from configuration, MTI from the known MTIs and
field 39 from the code table (anything else is "other"). Never card data. The per-message path only
adds to plain numbers (messages by label set, round trips by bucket) that go to prometheus-client once a
second (switch.common.metrics.Flushed), and the in-flight gauge is sampled by the pool rather than moved
twice per message. Gauges say how workers aggregate under PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from switch.common.metrics import FlushedCounts, FlushedHistogram
from switch.iso.codes import FIELD39_TO_RESULT
from switch.iso.messages import (
    MTI_AUTHORIZATION_REQUEST,
    MTI_AUTHORIZATION_RESPONSE,
    MTI_COMPLETION_ADVICE,
    MTI_COMPLETION_ADVICE_REPEAT,
    MTI_COMPLETION_RESPONSE,
    MTI_FINANCIAL_REQUEST,
    MTI_FINANCIAL_RESPONSE,
    MTI_NETWORK_REQUEST,
    MTI_NETWORK_RESPONSE,
    MTI_REVERSAL_ADVICE,
    MTI_REVERSAL_ADVICE_REPEAT,
    MTI_REVERSAL_ADVICE_RESPONSE,
    MTI_REVERSAL_REQUEST,
    MTI_REVERSAL_RESPONSE,
)

ROUND_TRIP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
KNOWN_MTIS = frozenset({
    MTI_AUTHORIZATION_REQUEST, MTI_AUTHORIZATION_RESPONSE, MTI_FINANCIAL_REQUEST, MTI_FINANCIAL_RESPONSE,
    MTI_COMPLETION_ADVICE, MTI_COMPLETION_ADVICE_REPEAT, MTI_COMPLETION_RESPONSE, MTI_REVERSAL_REQUEST,
    MTI_REVERSAL_RESPONSE, MTI_REVERSAL_ADVICE, MTI_REVERSAL_ADVICE_REPEAT, MTI_REVERSAL_ADVICE_RESPONSE,
    MTI_NETWORK_REQUEST, MTI_NETWORK_RESPONSE,
})  # fmt: skip
_ENDPOINT = ("network", "endpoint")

messages = Counter("switch_network_messages_total", "ISO 8583 messages by direction (tx/rx), MTI and field 39",
                   [*_ENDPOINT, "direction", "mti", "code"])
round_trip = Histogram("switch_network_round_trip_seconds", "Request to matched response", _ENDPOINT,
                       buckets=ROUND_TRIP_BUCKETS_S)
in_flight = Gauge("switch_network_in_flight", "Requests awaiting a response (sampled)", _ENDPOINT,
                  multiprocess_mode="livesum")
timeouts = Counter("switch_network_timeouts_total", "Requests that got no response in time", _ENDPOINT)
late = Counter("switch_network_link_late_total", "Responses that arrived after their request gave up", _ENDPOINT)
unhandled = Counter("switch_network_link_unhandled_total", "Responses or requests nobody was waiting for",
                    _ENDPOINT)
mac_failures = Counter("switch_network_mac_failures_total", "Messages rejected for a bad or missing MAC",
                       _ENDPOINT)
reconnects = Counter("switch_network_reconnects_total", "Links connected and signed on again after a loss",
                     _ENDPOINT)
connect_failures = Counter("switch_network_connect_failures_total", "Failed connects or sign-ons", _ENDPOINT)
# The worst state any worker sees: 0 closed, 1 half-open, 2 open.
breaker_state = Gauge("switch_network_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                      _ENDPOINT, multiprocess_mode="livemax")
breaker_transitions = Counter("switch_network_breaker_transitions_total", "Circuit breaker state changes",
                              [*_ENDPOINT, "state"])
# Every message and round trip updates these: handed to prometheus-client once a second (common.metrics.Flushed).
_messages = FlushedCounts(messages)
_round_trips = FlushedHistogram(round_trip)
no_route = Counter("switch_network_no_route_total", "Requests refused because no link could take them",
                   ["network"])


def mti_label(mti: str) -> str:
    return mti if mti in KNOWN_MTIS else "other"


def code_label(code: object) -> str:
    if code is None:
        return "none"
    return code if isinstance(code, str) and code in FIELD39_TO_RESULT else "other"


class LinkMetrics:
    """The children of one endpoint, bound once and shared by its links."""

    __slots__ = ("network", "endpoint", "labels", "_sent", "_received", "timeouts", "late", "unhandled",
                 "reconnects", "connect_failures", "in_flight", "breaker_state", "mac_failures")

    def __init__(self, network: str, endpoint: str) -> None:
        self.network = network
        self.endpoint = endpoint
        labels = self.labels = (network, endpoint)
        self._sent: dict[str, tuple[str, ...]] = {}
        self._received: dict[tuple[str, object], tuple[str, ...]] = {}
        self.timeouts = timeouts.labels(*labels)
        self.late = late.labels(*labels)
        self.unhandled = unhandled.labels(*labels)
        self.mac_failures = mac_failures.labels(*labels)
        self.reconnects = reconnects.labels(*labels)
        self.connect_failures = connect_failures.labels(*labels)
        self.in_flight = in_flight.labels(*labels)
        self.breaker_state = breaker_state.labels(*labels)

    def sent(self, mti: str) -> None:
        labels = self._sent.get(mti)
        if labels is None:
            # Keyed by the label, so a peer sending garbage cannot grow this dict past the known set.
            label = mti_label(mti)
            labels = (self.network, self.endpoint, "tx", label, "")
            if label == mti:
                self._sent[mti] = labels
        _messages.add(labels)

    def received(self, mti: str, code: object) -> None:
        labels = self._received.get((mti, code))
        if labels is None:
            labels = self._received_labels(mti, code)
        _messages.add(labels)

    def round_trip(self, seconds: float) -> None:
        _round_trips.observe(self.labels, seconds)

    def _received_labels(self, mti: str, code: object) -> tuple[str, ...]:
        known = (mti_label(mti), code_label(code))
        labels = (self.network, self.endpoint, "rx", *known)
        if known == (mti, code):
            # Only known MTIs and codes are cached under their own key, which bounds this dict.
            self._received[known] = labels
        return labels

    def breaker_changed(self, state: int, state_label: str) -> None:
        self.breaker_state.set(state)
        breaker_transitions.labels(self.network, self.endpoint, state_label).inc()
