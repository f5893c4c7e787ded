"""The Grafana dashboards: the checked-in JSON is what deploy/grafana/dashboards.py generates, every panel says
what it shows and in which unit, and every query names a metric that a process of the project exports."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
REGENERATE = "run `python deploy/grafana/dashboards.py` and commit the JSON files it writes"

# Every metric the switch, the vault and the simulator export, as Prometheus sees them (counters with
# `_total`), plus Prometheus's own `up`. A query naming anything else is a typo.
KNOWN_METRICS = frozenset({
    "up",
    "switch_http_requests_total", "switch_idempotent_replays_total", "switch_batch_splits_total",
    "switch_network_late_responses_total",
    "switch_network_messages_total", "switch_network_in_flight", "switch_network_timeouts_total",
    "switch_network_link_late_total", "switch_network_link_unhandled_total", "switch_network_mac_failures_total",
    "switch_network_reconnects_total", "switch_network_connect_failures_total", "switch_network_breaker_state",
    "switch_network_breaker_transitions_total", "switch_network_no_route_total",
    "switch_fraud_decisions_total", "switch_fraud_shadow_matches_total", "switch_fraud_rule_matches_total",
    "switch_fraud_unavailable_total", "switch_fraud_card_testing_started_total", "switch_fraud_screen_seconds_total",
    "switch_payments_total", "switch_outbox_pending", "switch_outbox_oldest_age_seconds", "switch_outbox_sent_total",
    "switch_recovery_resolved_total", "switch_clock_offset_seconds",
    "switch_webhook_deliveries_pending", "switch_webhook_delivery_lag_seconds",
    "switch_webhook_attempts_total", "switch_settlement_exceptions_open", "switch_worker_restarts_total",
    "vault_requests_total", "vault_hsm_operations_total", "vault_key_versions", "vault_key_version_active",
    "acquirer_sim_messages_total", "acquirer_sim_effects_total", "acquirer_sim_faults_total",
    "acquirer_sim_wire_errors_total", "acquirer_sim_connections_total", "acquirer_sim_connections_open",
    "acquirer_sim_delayed_answers", "acquirer_sim_holds_outstanding", "acquirer_sim_held_outstanding_minor",
    "acquirer_sim_settlement_dropped_total",
}) | {  # fmt: skip
    f"{histogram}{suffix}"
    for histogram in ("switch_http_request_duration_seconds", "switch_network_round_trip_seconds",
                      "vault_request_duration_seconds")
    for suffix in ("_bucket", "_sum", "_count")
}  # fmt: skip
UNITS = frozenset({"reqps", "cps", "ops", "s", "percentunit", "short"})
DASHBOARDS = {"overview", "networks", "reliability", "vault", "fraud", "webhooks", "settlement"}

# What is left of a PromQL expression once strings, label matchers, ranges and groupings are gone: the
# identifiers not followed by "(" are metric names.
_REMOVED = (
    re.compile(r'"(?:[^"\\]|\\.)*"'),
    re.compile(r"\{[^}]*\}"),
    re.compile(r"\[[^\]]*\]"),
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
)
_IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
_VARIABLE_MATCHER = re.compile(r'([=!]~?)\s*"\$')


@pytest.fixture(scope="module")
def dashboards_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checked_in() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((GRAFANA / "dashboards").glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [inner for panel in panels for inner in (panel, *_panels(panel.get("panels", [])))]


def _all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, text in _checked_in().items() for panel in _panels(json.loads(text)["panels"])]


def metric_names(expr: str) -> set[str]:
    for pattern in _REMOVED:
        expr = pattern.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(expr) if name not in _KEYWORDS}


def test_checked_in_json_is_what_the_generator_writes(dashboards_module: ModuleType) -> None:
    rendered = dashboards_module.render_all()
    checked_in = _checked_in()
    assert set(rendered) == DASHBOARDS
    assert set(checked_in) == set(rendered), f"dashboard files differ from the generator's list: {REGENERATE}"
    for name, text in rendered.items():
        assert checked_in[name] == text, f"deploy/grafana/dashboards/{name}.json is not what dashboards.py makes: " \
                                         f"{REGENERATE}"


def test_dashboards_have_stable_uids_and_say_why_there_is_no_merchant(dashboards_module: ModuleType) -> None:
    for name, text in _checked_in().items():
        dashboard = json.loads(text)
        assert dashboard["uid"] == f"switch-{name}"
        assert "merchant label" in dashboard["description"]
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_every_panel_has_a_title_a_description_a_unit_and_a_query() -> None:
    panels = _all_panels()
    assert len(panels) >= 40
    for name, panel in panels:
        where = f"{name}: panel {panel.get('id')} {panel.get('title')!r}"
        assert panel.get("title"), where
        assert len(panel.get("description") or "") >= 20, f"{where} says nothing to the operator"
        assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, f"{where} has no known unit"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert any(target.get("expr") for target in panel.get("targets", [])), f"{where} queries nothing"


def test_every_query_names_only_known_metrics() -> None:
    for name, panel in _all_panels():
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            where = f"{name}: {panel['title']!r}: {target['expr']}"
            assert names, f"{where} names no metric"
            assert names <= KNOWN_METRICS, f"{where} names unknown metrics {sorted(names - KNOWN_METRICS)}"


def test_metric_names_are_found_inside_functions_and_groupings() -> None:
    expr = ('histogram_quantile(0.99, sum by (network, le) (rate(switch_network_round_trip_seconds_bucket'
            '{network=~"$network"}[$__rate_interval]))) or on() (0 * sum(up{job="switch"}))')
    assert metric_names(expr) == {"switch_network_round_trip_seconds_bucket", "up"}
    assert metric_names("sum(rate(switch_payment_total[1m]))") == {"switch_payment_total"}


def test_variables_are_matched_as_regular_expressions() -> None:
    """`$network` may be "All" (.*) or several networks (visa|mastercard): only =~ and !~ match those."""
    for name, panel in _all_panels():
        for target in panel["targets"]:
            operators = _VARIABLE_MATCHER.findall(target["expr"])
            assert all(operator.endswith("~") for operator in operators), f"{name}: {target['expr']}"


def test_panel_queries_are_ready_for_a_live_prometheus(dashboards_module: ModuleType) -> None:
    queries = dashboards_module.panel_queries()
    assert len(queries) == sum(len(panel["targets"]) for _, panel in _all_panels())
    assert {dashboard for dashboard, _, _ in queries} == DASHBOARDS
    for dashboard, title, expr in queries:
        assert "$" not in expr, f"{dashboard}: {title!r}: {expr}"
    assert dashboards_module.live_expr('rate(x{network=~"${network}"}[$__rate_interval])') == \
        'rate(x{network=~".*"}[1m])'
