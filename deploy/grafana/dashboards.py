"""The switch's Grafana dashboards, as code: `python deploy/grafana/dashboards.py` writes dashboards/<name>.json.

The JSON files are generated, never edited by hand: tests/unit/test_grafana_dashboards.py fails when a checked-in
file differs from `render_all()`. Output is deterministic (sorted keys, fixed uids, no timestamps) so a change
shows as a plain diff. Every query reads one Prometheus data source, chosen by the `datasource` variable.

A panel that counts events which may never happen (5xx, declines, no-route refusals...) adds `or on() (0 * X)`,
X being a series that is always there while the process is scraped: the panel then says 0 rather than "No data",
and still says "No data" when the metric itself is missing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attr
from grafanalib import core as g

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE_INTERVAL = "[$__rate_interval]"
NETWORK = 'network=~"$network"'
GRID_WIDTH = 24
# One base step: Grafana colours by thresholds where no value mapping applies, and an empty list has no colour.
BASE_THRESHOLDS = [{"color": "green", "value": None}]

NO_MERCHANT_LABEL = (
    " No metric carries a merchant label, on purpose: one series per merchant would multiply every series by the "
    "number of merchants (cardinality). Look a merchant's payments up through the API or the database instead."
)

# What a live Prometheus needs in place of Grafana's variables (see `panel_queries`).
LIVE_SUBSTITUTIONS = (
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("${network}", ".*"),
    ("$network", ".*"),
)


def rate(selector: str) -> str:
    return f"rate({selector}{RATE_INTERVAL})"


def zero_when_none(expr: str, always_there: str) -> str:
    """`expr`, or a single 0 while `always_there` has data: "nothing happened" reads 0, not "No data"."""
    return f"({expr}) or on() (0 * {always_there})"


def quantile(q: float, bucket_selector: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({rate(bucket_selector)}))"


# Panels. Each helper takes (expr, legend) pairs and sets the data source, the unit and the size; `_flow`
# places the panels left to right, top to bottom.


def _targets(queries: Iterable[tuple[str, str]], format: str = "time_series") -> list[g.Target]:
    return [
        g.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + index), datasource=DATASOURCE,
                 format=format, intervalFactor=1)
        for index, (expr, legend) in enumerate(queries)
    ]  # fmt: skip


def _size(width: int, height: int) -> g.GridPos:
    return g.GridPos(h=height, w=width, x=0, y=0)


def timeseries(title: str, description: str, unit: str, *queries: tuple[str, str], width: int = 12,
               height: int = 8, ratio: bool = False) -> g.TimeSeries:  # fmt: skip
    return g.TimeSeries(
        title=title, description=description, unit=unit, dataSource=DATASOURCE, targets=_targets(queries),
        gridPos=_size(width, height), legendDisplayMode="table", legendPlacement="right",
        legendCalcs=["mean", "max", "lastNotNull"], tooltipMode="multi", tooltipSort="desc", fillOpacity=10,
        valueMin=0, valueMax=1 if ratio else None, thresholds=BASE_THRESHOLDS,
    )  # fmt: skip


def stat(title: str, description: str, unit: str, *queries: tuple[str, str], width: int = 24, height: int = 4,
         mappings: list[Any] | None = None) -> g.Stat:  # fmt: skip
    return g.Stat(
        title=title, description=description, format=unit, dataSource=DATASOURCE, targets=_targets(queries),
        gridPos=_size(width, height), reduceCalc="lastNotNull", graphMode="none", colorMode="background",
        mappings=mappings or [], noValue="no data",
        thresholds=BASE_THRESHOLDS,
    )  # fmt: skip


def state_timeline(title: str, description: str, unit: str, *queries: tuple[str, str], mappings: list[Any],
                   width: int = 12, height: int = 8) -> g.StateTimeline:  # fmt: skip
    return g.StateTimeline(
        title=title, description=description, dataSource=DATASOURCE, targets=_targets(queries),
        gridPos=_size(width, height), mappings=mappings, thresholds=BASE_THRESHOLDS,
        extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
    )  # fmt: skip


def heatmap(title: str, description: str, unit: str, bucket_selector: str, width: int = 12,
            height: int = 8) -> g.Heatmap:  # fmt: skip
    """A heatmap of a histogram's buckets: requests per second in each latency bucket, `unit` on the y axis."""
    expr = f"sum by (le) ({rate(bucket_selector)})"
    return g.Heatmap(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_targets([(expr, "{{le}}")], format="heatmap"), gridPos=_size(width, height),
        dataFormat="tsbuckets", yBucketBound="upper", hideZeroBuckets=True, yAxis=g.YAxis(format=unit),
        tooltip=g.Tooltip(), options={}, thresholds=BASE_THRESHOLDS,
        extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
    )  # fmt: skip


def _flow(panels: list[g.Panel]) -> list[g.Panel]:
    placed, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        width, height = panel.gridPos.w, panel.gridPos.h
        if x + width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append(attr.evolve(panel, gridPos=g.GridPos(h=height, w=width, x=x, y=y)))
        x, row_height = x + width, max(row_height, height)
    return placed


def _value_mappings(*items: tuple[str, str, str]) -> list[Any]:
    return [g.StatValueMappings(*(g.StatValueMappingItem(text, value, color, index)
                                  for index, (value, text, color) in enumerate(items)))]  # fmt: skip


BREAKER_STATES = _value_mappings(("0", "closed", "green"), ("1", "half-open", "yellow"), ("2", "open", "red"))
UP_OR_DOWN = _value_mappings(("0", "down", "red"), ("1", "up", "green"))


# Variables.


def _datasource_variable() -> g.Template:
    variable = g.Template(name="datasource", label="Data source", query="prometheus", type="datasource",
                          refresh=g.REFRESH_ON_DASHBOARD_LOAD)  # fmt: skip
    variable._current = {}                   # Grafana picks the first Prometheus data source.
    return variable


def _network_variable() -> g.Template:
    variable = g.Template(
        name="network", label="Network", query="label_values(switch_network_messages_total, network)",
        dataSource=DATASOURCE, multi=True, includeAll=True, allValue=".*", refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
    )  # fmt: skip
    variable._current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


def _dashboard(uid: str, title: str, description: str, panels: list[g.Panel], network: bool) -> g.Dashboard:
    variables = [_datasource_variable(), *([_network_variable()] if network else [])]
    return g.Dashboard(
        uid=uid, title=title, description=description + NO_MERCHANT_LABEL, tags=["payment-switch"],
        panels=_flow(panels), templating=g.Templating(list=variables), timezone="utc", refresh="30s",
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, editable=True,
    ).auto_panel_ids()  # fmt: skip


# The dashboards.

PAYMENTS = f"switch_payments_total{{{NETWORK}}}"
HTTP_REQUESTS_RATE = f"sum({rate('switch_http_requests_total')})"
HTTP_5XX = 'switch_http_requests_total{status=~"5.."}'
HTTP_429 = 'switch_http_requests_total{status="429"}'


def overview() -> g.Dashboard:
    # network="none": refused before a network was chosen (a bad card number), not part of an approval rate.
    authorize = f'switch_payments_total{{operation="authorize",network!="none",{NETWORK}}}'
    approved = f'switch_payments_total{{operation="authorize",network!="none",result="succeeded",{NETWORK}}}'
    http_bucket = "switch_http_request_duration_seconds_bucket"
    failed = f'switch_payments_total{{result!="succeeded",{NETWORK}}}'
    errors = f"sum by (operation, result) ({rate(failed)})"
    http_5xx = f"sum by (route, status) ({rate(HTTP_5XX)})"
    panels = [
        stat("Targets up (1 up, 0 down)",
             "Whether Prometheus could scrape each process (jobs switch, vault, acquirer_sim). A target down means "
             "its panels go blank: look at that process first.",
             "short", ('up{job=~"switch|vault|acquirer_sim"}', "{{job}} {{instance}}"), mappings=UP_OR_DOWN),
        timeseries("Payments by network (payments/s)",
                   "Payment operations finished per second (authorize, capture, cancel, refund, reviews), by card "
                   "network; `none` is a payment that never reached a network (refused before routing).",
                   "reqps", (f"sum by (network) ({rate(PAYMENTS)})", "{{network}}")),
        timeseries("Payments by result (payments/s)",
                   "Payment operations per second by result: `succeeded` is the happy path; anything else is a "
                   "decline, a refusal or a failure (see the errors panel).",
                   "reqps", (f"sum by (result) ({rate(PAYMENTS)})", "{{result}}")),
        timeseries("Authorization approval rate by network (%)",
                   "Share of authorizations that succeeded, per network. A sudden drop on one network points at "
                   "that network or its issuers; a drop on all of them points at the switch or the fraud screen.",
                   "percentunit",
                   (f"sum by (network) ({rate(approved)}) / sum by (network) ({rate(authorize)})", "{{network}}"),
                   ratio=True),
        timeseries("Payment errors by result (payments/s)",
                   "Payment operations per second whose result is not `succeeded`, by operation and result: "
                   "issuer declines, fraud blocks, network timeouts, idempotency conflicts, validation refusals.",
                   "reqps", (zero_when_none(errors, f"sum({rate(PAYMENTS)})"), "{{operation}} {{result}}")),
        timeseries("HTTP latency p50 / p95 / p99 (seconds)",
                   "Time the merchant API took to answer, all routes together, at three percentiles. p99 above "
                   "the network's timeout means merchants see timeouts.",
                   "s", *((quantile(q, http_bucket, "le"), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99))),
        heatmap("HTTP latency distribution (seconds, requests/s per bucket)",
                "The same latency histogram as a heatmap: each cell is the rate of requests that finished within "
                "that bucket. Two bands mean two populations (e.g. cached idempotent replays and network calls).",
                "s", http_bucket),
        timeseries("HTTP 5xx responses (responses/s)",
                   "Merchant API answers with a 5xx status per second, by route and status: the switch failed "
                   "(503 is load shedding or a dependency down). Zero is the normal state.",
                   "reqps", (zero_when_none(http_5xx, HTTP_REQUESTS_RATE), "{{route}} {{status}}")),
        timeseries("Fraud decisions (decisions/s)",
                   "Fraud screen outcomes per second: allow, review (held for a person) or block. A rise in blocks "
                   "without a rise in traffic is an attack or a rule gone wrong.",
                   "reqps", (f"sum by (decision) ({rate('switch_fraud_decisions_total')})", "{{decision}}")),
    ]
    return _dashboard("switch-overview", "Payment switch: overview",
                      "Traffic, approvals, latency and errors of the whole switch at a glance.", panels, True)


def networks() -> g.Dashboard:
    endpoint = "{{network}} {{endpoint}}"
    messages = f"switch_network_messages_total{{{NETWORK}}}"
    messages_rate = f"sum({rate(messages)})"
    declines = f'switch_network_messages_total{{{NETWORK},direction="rx",code!~"00|08|10|none"}}'
    breaker_now = f"max by (network, endpoint) (switch_network_breaker_state{{{NETWORK}}})"

    def summed(labels: str, metric: str) -> str:
        """The rate of `metric` on the chosen networks, summed by `labels`."""
        return f"sum by ({labels}) ({rate(f'{metric}{{{NETWORK}}}')})"

    def per_endpoint(metric: str) -> str:
        return summed("network, endpoint", metric)

    transitions = summed("network, endpoint, state", "switch_network_breaker_transitions_total")
    late_by_mti = summed("network, mti", "switch_network_late_responses_total")
    link_late = f"switch_network_link_late_total{{{NETWORK}}}"
    sim_faults = summed("network, fault", "acquirer_sim_faults_total")
    sim_wire_errors = f"acquirer_sim_wire_errors_total{{{NETWORK}}}"

    panels = [
        stat("Circuit breakers now (closed / half-open / open)",
             "The worst breaker state any worker sees, per network endpoint. Open means the switch stopped "
             "sending to that endpoint after repeated failures and refuses payments it cannot route elsewhere.",
             "short", (breaker_now, endpoint), mappings=BREAKER_STATES),
        timeseries("Requests in flight (requests)",
                   "ISO 8583 requests sent and still awaiting their response, per endpoint (sampled). Growth "
                   "without more traffic means the network is slowing down.",
                   "short", (f"sum by (network, endpoint) (switch_network_in_flight{{{NETWORK}}})", endpoint)),
        timeseries("Round trip p50 / p99 (seconds)",
                   "Time from sending a request to its matched response, per network. The p99 approaching the "
                   "timeout comes before timeouts and reversals.",
                   "s", *((quantile(q, f"switch_network_round_trip_seconds_bucket{{{NETWORK}}}", "network, le"),
                           f"{{{{network}}}} p{round(q * 100)}") for q in (0.5, 0.99))),
        timeseries("Messages sent and received by MTI (messages/s)",
                   "ISO 8583 messages per second by network, direction (tx sent, rx received) and message type. "
                   "0800/0810 are sign-ons and echoes; tx without matching rx is a network that stopped answering.",
                   "cps", (f"sum by (network, direction, mti) ({rate(messages)})",
                           "{{network}} {{direction}} {{mti}}")),
        timeseries("Declines by field 39 code (responses/s)",
                   "Responses per second whose field 39 is not an approval (00, 08, 10), by network and code: "
                   "51 insufficient funds, 05 do not honour, 91/96 issuer or network trouble; docs/errors.md maps "
                   "them all.",
                   "cps", (zero_when_none(f"sum by (network, code) ({rate(declines)})", messages_rate),
                           "{{network}} {{code}}")),
        timeseries("Timeouts (requests/s)",
                   "Requests per second that got no response in time; a timed-out authorization is reversed "
                   "through the outbox.",
                   "cps", (per_endpoint("switch_network_timeouts_total"), endpoint), width=8),
        timeseries("Late answers (responses/s)",
                   "Responses per second that arrived after their request gave up, per endpoint (link) and per "
                   "message type (payments). Late answers come with timeouts: the network is slow, not silent.",
                   "cps", (per_endpoint("switch_network_link_late_total"), endpoint),
                   (zero_when_none(late_by_mti, f"sum({rate(link_late)})"), "{{network}} {{mti}}"), width=8),
        timeseries("Unhandled messages (messages/s)",
                   "Messages per second that nobody was waiting for: answers to unknown requests or requests "
                   "from the network we do not serve. Steady non-zero means a matching-key mismatch.",
                   "cps", (per_endpoint("switch_network_link_unhandled_total"), endpoint), width=8),
        state_timeline("Circuit breaker state over time (closed / half-open / open)",
                       "Breaker state per endpoint through the time range: green closed, yellow half-open "
                       "(probing), red open (refusing).",
                       "short", (breaker_now, endpoint), mappings=BREAKER_STATES),
        timeseries("Breaker transitions (transitions/s)",
                   "Breaker state changes per second by the state entered. Flapping between open and half-open "
                   "means the endpoint fails again as soon as it is tried.",
                   "cps", (zero_when_none(transitions, f"sum(switch_network_breaker_state{{{NETWORK}}})"),
                           "{{network}} {{endpoint}} {{state}}")),
        timeseries("Reconnects and connect failures (events/s)",
                   "Links connected and signed on again after a loss, and connects or sign-ons that failed. "
                   "Failures without reconnects mean an endpoint is unreachable.",
                   "cps", (per_endpoint("switch_network_reconnects_total"), f"{endpoint} reconnect"),
                   (per_endpoint("switch_network_connect_failures_total"), f"{endpoint} failure"), width=8),
        timeseries("MAC failures (messages/s)",
                   "Messages rejected for a bad or missing MAC. Non-zero after a key change means the two sides "
                   "hold different MAC keys.",
                   "cps", (per_endpoint("switch_network_mac_failures_total"), endpoint), width=8),
        timeseries("No-route refusals (requests/s)",
                   "Payments refused because no link of the network could take them (all breakers open or every "
                   "link full). Merchants see a retryable error.",
                   "reqps", (zero_when_none(summed("network", "switch_network_no_route_total"), messages_rate),
                             "{{network}}"), width=8),
        timeseries("Simulator: messages by response code (messages/s)",
                   "What the acquirer simulator answered, per network, request MTI and field 39. Only on staging "
                   "and load tests: production has real networks here.",
                   "cps", (summed("network, mti, response_code", "acquirer_sim_messages_total"),
                           "{{network}} {{mti}} {{response_code}}")),
        timeseries("Simulator: effects on the issuer's books (messages/s)",
                   "What the simulated issuer did per second: holds, sales, refunds, captures, reversals, "
                   "duplicates (answered from its records), none.",
                   "cps", (summed("network, effect", "acquirer_sim_effects_total"),
                           "{{network}} {{effect}}")),
        timeseries("Simulator: faults injected, wire errors, connections (events/s)",
                   "Faults the simulator injected on purpose (docs/simulator.md), frames it could not read, and "
                   "connections it accepted. Faults here explain timeouts and MAC failures on the switch side.",
                   "cps", (zero_when_none(sim_faults, f"sum({rate(sim_wire_errors)})"), "{{network}} {{fault}}"),
                   (summed("network, kind", "acquirer_sim_wire_errors_total"), "{{network}} wire {{kind}}"),
                   (summed("network", "acquirer_sim_connections_total"),
                    "{{network}} connections")),
        timeseries("Simulator: connections open and answers held back (count)",
                   "Connections open at the simulator and answers it is holding back to simulate latency.",
                   "short", (f"sum by (network) (acquirer_sim_connections_open{{{NETWORK}}})", "{{network}} open"),
                   (f"sum by (network) (acquirer_sim_delayed_answers{{{NETWORK}}})", "{{network}} delayed")),
        timeseries("Simulator: holds outstanding (holds)",
                   "Authorizations the simulated issuer holds, not yet captured or released. Growth without "
                   "captures means captures or reversals are not arriving.",
                   "short", ("acquirer_sim_holds_outstanding", "holds"), width=8),
        timeseries("Simulator: amount held outstanding (minor units)",
                   "Sum of the outstanding holds, in minor units (cents) of all currencies together.",
                   "short", ("acquirer_sim_held_outstanding_minor", "held"), width=8),
        timeseries("Simulator: settlement items dropped (items/s)",
                   "Cleared items the simulator forgot before a settlement cut-off (its memory limit). Non-zero "
                   "makes settlement files incomplete and creates false settlement exceptions.",
                   "cps", (rate("acquirer_sim_settlement_dropped_total"), "dropped"), width=8),
    ]
    return _dashboard("switch-networks", "Payment switch: card networks",
                      "The ISO 8583 links to the card networks: latency, messages, declines, breakers and the "
                      "acquirer simulator's side.", panels, True)


def reliability() -> g.Dashboard:
    conflicts = 'switch_payments_total{result=~"idempotency_key_in_use|idempotency_key_reused"}'
    payments_rate = f"sum({rate('switch_payments_total')})"
    panels = [
        timeseries("Outbox pending by kind (messages)",
                   "Capture advices and reversals persisted but not yet acknowledged by the network. They are "
                   "retried until acknowledged; a growing queue means a network is not taking them.",
                   "short", ("max by (kind) (switch_outbox_pending)", "{{kind}}")),
        timeseries("Outbox oldest message age by kind (seconds)",
                   "Age of the oldest unacknowledged outbox message. Above a few minutes, money is held on "
                   "cardholders' accounts longer than it should be (reversals) or captures settle late.",
                   "s", ("max by (kind) (switch_outbox_oldest_age_seconds)", "{{kind}}")),
        timeseries("Outbox sends by result (messages/s)",
                   "Outbox messages sent per second: acknowledged by the network, or to be retried.",
                   "cps", (f"sum by (kind, result) ({rate('switch_outbox_sent_total')})", "{{kind}} {{result}}")),
        timeseries("Recovery: payments resolved (payments/s)",
                   "Payments and refunds found in flight past their deadline (their worker died), then failed and "
                   "reversed by recovery. Some after a worker restart is expected; steady non-zero means payments "
                   "keep getting stuck.",
                   "reqps", (rate("switch_recovery_resolved_total"), "resolved")),
        timeseries("Clock offset from the database (seconds)",
                   "How far the workers' clocks are from the database's, at most. Payment deadlines are the "
                   "worker's time and recovery reads them with the database's: past a second, recovery may "
                   "reverse payments still in flight (SwitchClockOffset pages).",
                   "s", ("max(switch_clock_offset_seconds)", "offset")),
        timeseries("Idempotent replays (requests/s)",
                   "Requests answered from a stored response because the merchant retried with the same "
                   "idempotency key. Normal in small numbers; a surge means merchants retry hard.",
                   "reqps", (rate("switch_idempotent_replays_total"), "replays"), width=8),
        timeseries("Idempotency conflicts (requests/s)",
                   "Requests refused on their idempotency key: `idempotency_key_in_use` (the first request is "
                   "still running) and `idempotency_key_reused` (same key, different body: a merchant bug).",
                   "reqps", (zero_when_none(f"sum by (operation, result) ({rate(conflicts)})", payments_rate),
                             "{{operation}} {{result}}"),
                   width=8),
        timeseries("Batch splits by statement (splits/s)",
                   "Group-committed batches split in halves to isolate a row Postgres refused. Non-zero means "
                   "bad rows reach the database; every other row of the batch was still written.",
                   "cps", (zero_when_none(f"sum by (statement) ({rate('switch_batch_splits_total')})",
                                          'sum(up{job="switch"})'), "{{statement}}"), width=8),
        timeseries("HTTP 5xx and 429 responses (responses/s)",
                   "Merchant API failures per second by route: 5xx (503 is the switch shedding load or a "
                   "dependency away: database, vault, network) and 429 (too many requests for one API key).",
                   "reqps",
                   *((zero_when_none(f"sum by (route, status) ({rate(selector)})", HTTP_REQUESTS_RATE),
                      "{{route}} {{status}}") for selector in (HTTP_5XX, HTTP_429))),
        timeseries("Worker restarts (restarts/s)",
                   "Switch workers that died and were restarted by the supervisor. Any restart deserves a look at "
                   "the logs: in-flight payments of that worker are left to the recovery sweep.",
                   "cps", (rate("switch_worker_restarts_total"), "restarts")),
    ]
    return _dashboard("switch-reliability", "Payment switch: reliability",
                      "What the switch does to survive failures: the outbox, recovery, idempotency, batch splits, "
                      "load shedding and worker restarts.", panels, False)


def vault() -> g.Dashboard:
    panels = [
        timeseries("Vault requests by operation and result (requests/s)",
                   "Requests the vault answered per second (tokenize, detokenize, MAC keys...) by result: ok or "
                   "the error code. Errors here fail payments: the switch cannot reach card data without the vault.",
                   "reqps", (f"sum by (operation, result) ({rate('vault_requests_total')})",
                             "{{operation}} {{result}}")),
        timeseries("Vault latency p50 / p99 by operation (seconds)",
                   "Time the vault took per request. It adds directly to every payment's latency.",
                   "s", *((quantile(q, "vault_request_duration_seconds_bucket", "operation, le"),
                           f"{{{{operation}}}} p{round(q * 100)}") for q in (0.5, 0.99))),
        timeseries("HSM operations (operations/s)",
                   "Calls into the HSM per second. Keys are unwrapped once and cached, so this should stay far "
                   "below the payment rate; a rise means the cache is not working.",
                   "ops", (f"sum by (operation) ({rate('vault_hsm_operations_total')})", "{{operation}}")),
        timeseries("Data-key versions loaded and active (versions)",
                   "How many data-key versions the vault holds unwrapped in memory, and the version new cards are "
                   "encrypted with. The active version moves after a rotation; old versions stay for old cards.",
                   "short", ("max(vault_key_versions)", "versions loaded"),
                   ("max(vault_key_version_active)", "active version")),
    ]
    return _dashboard("switch-vault", "Payment switch: vault",
                      "The card vault: requests, latency, HSM use and key versions.", panels, False)


def fraud() -> g.Dashboard:
    decisions = "switch_fraud_decisions_total"
    rule_matches = f"sum by (mode, rule_set, rule) ({rate('switch_fraud_rule_matches_total')})"
    panels = [
        timeseries("Decisions by decision and risk level (decisions/s)",
                   "Fraud screen outcomes per second by decision (allow, review, block) and the merchant's risk "
                   "level (normal, elevated, highest).",
                   "reqps", (f"sum by (decision, risk_level) ({rate(decisions)})", "{{decision}} {{risk_level}}")),
        timeseries("Rule matches, live and shadow (matches/s)",
                   "Rules that matched per second: live rules acted on the payment, shadow rules only would have. "
                   "Compare a shadow rule's matches with live ones before switching it on.",
                   "cps", (zero_when_none(rule_matches, f"sum({rate(decisions)})"),
                           "{{mode}} {{rule_set}} rule {{rule}}"),
                   (rate("switch_fraud_shadow_matches_total"), "shadow rules that would have acted")),
        timeseries("Screens without velocity counters (screens/s)",
                   "Screens that ran without their velocity counters (Redis away or late) and failed open or "
                   "closed. Non-zero means card-testing and velocity rules are blind.",
                   "reqps", (rate("switch_fraud_unavailable_total"), "unavailable"), width=8),
        timeseries("Card-testing cool-offs started (cool-offs/s)",
                   "Merchants put in a card-testing cool-off (many small declines in a row). Each one is an "
                   "attack in progress at a merchant.",
                   "cps", (rate("switch_fraud_card_testing_started_total"), "cool-offs"), width=8),
        timeseries("Mean screen time (seconds)",
                   "Average time a payment spends in the fraud screen, counters included: screen seconds per "
                   "second over decisions per second.",
                   "s", (f"sum({rate('switch_fraud_screen_seconds_total')}) / sum({rate(decisions)})", "mean"),
                   width=8),
    ]
    return _dashboard("switch-fraud", "Payment switch: fraud screen",
                      "The fraud screen: decisions, rule matches, fail-opens, card testing and its cost.", panels,
                      False)


def webhooks() -> g.Dashboard:
    panels = [
        timeseries("Webhook deliveries pending (deliveries)",
                   "Webhook deliveries not yet delivered or given up, retries included.",
                   "short", ("max(switch_webhook_deliveries_pending)", "pending"), width=8),
        timeseries("Webhook delivery lag (seconds)",
                   "How long the oldest due delivery has waited. Merchants learn of payments this late.",
                   "s", ("max(switch_webhook_delivery_lag_seconds)", "lag"), width=8),
        timeseries("Webhook attempts by result (attempts/s)",
                   "Delivery attempts per second: delivered (2xx from the merchant), retry (due again later) or "
                   "failed (given up: 410 or endpoint disabled). Retries are usually one merchant's endpoint down.",
                   "reqps", (f"sum by (result) ({rate('switch_webhook_attempts_total')})", "{{result}}"), width=8),
    ]
    return _dashboard("switch-webhooks", "Payment switch: webhooks",
                      "Webhook deliveries to merchants: backlog, lag and attempts.", panels, False)


def settlement() -> g.Dashboard:
    panels = [
        stat("Open settlement exceptions now (exceptions)",
             "Settlement lines of active files that did not match the ledger and that no operator resolved yet: "
             "each needs a person (docs/settlement.md).",
             "short", ("max(switch_settlement_exceptions_open)", "open"), width=8, height=8),
        timeseries("Open settlement exceptions (exceptions)",
                   "The same count over time: it should jump after a settlement import and come down as people "
                   "resolve the exceptions.",
                   "short", ("max(switch_settlement_exceptions_open)", "open"), width=16),
    ]
    return _dashboard("switch-settlement", "Payment switch: settlement",
                      "Settlement reconciliation: exceptions waiting for a person.", panels, False)


DASHBOARDS = {
    "overview": overview,
    "networks": networks,
    "reliability": reliability,
    "vault": vault,
    "fraud": fraud,
    "webhooks": webhooks,
    "settlement": settlement,
}


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        to_json_data = getattr(o, "to_json_data", None)
        return to_json_data() if to_json_data else super().default(o)


def render_all() -> dict[str, str]:
    """Name -> the dashboard's JSON text, exactly as written to dashboards/<name>.json."""
    return {name: json.dumps(build().to_json_data(), cls=_Encoder, sort_keys=True, indent=2) + "\n"
            for name, build in DASHBOARDS.items()}  # fmt: skip


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def live_expr(expr: str) -> str:
    """The query as a live Prometheus takes it: Grafana's variables replaced by their widest values."""
    for variable, value in LIVE_SUBSTITUTIONS:
        expr = expr.replace(variable, value)
    return expr


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target, with variables substituted for a live Prometheus."""
    queries = []
    for name, text in render_all().items():
        for panel in _panels(json.loads(text)["panels"]):
            for target in panel.get("targets", []):
                queries.append((name, panel["title"], live_expr(target["expr"])))
    return queries


def write_all(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard and remove JSON files of dashboards that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_all()
    for stale in directory.glob("*.json"):
        if stale.stem not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / f"{name}.json"
        path.write_text(text)
        written.append(path)
    return written


def main() -> int:
    for path in write_all():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

