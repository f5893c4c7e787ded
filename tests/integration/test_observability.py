"""The shipped dashboards and rules, proven against a real Prometheus (Debian's package) scraping the real
switch, vault and simulator of the dedicated stack.

A short load with approvals, declines, a refund, an idempotency conflict, a late answer and a worker killed
(and restarted by its supervisor), then a network that stops answering: every dashboard panel's query,
every recording rule and every metric an alert reads return data through Prometheus's HTTP API (no typo,
no missing metric, no label that does not exist), no rule fails to evaluate, and the timeout, breaker
and worker-restart alerts fire with the rules exactly as shipped (their `for` durations included).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio

from loadtest.httpclient import Client
from switch.common.metrics import Flushed
from switch.dev.devstack import REPO_ROOT
from switch.dev.observe import find_prometheus, start_prometheus
from tests.conftest import simulator
from tests.integration.helpers import MASTERCARD_OK, VISA_DECLINE, VISA_INSUFFICIENT, key, luhn_card, payment
from tests.integration.solo import SoloStack, Switch, eventually

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL_S = 1.0
BLOCKED_BIN = "411199"
DRILL_ALERTS = {("SwitchNetworkTimeouts", "visa"), ("SwitchNetworkBreakerOpen", "visa")}
DRILL_TIMEOUT_S = 150.0
ZERO_WHEN_NONE = re.compile(r"^\((?P<events>.*)\) or on\(\) \(0 \* .*\)$", re.S)
# Queries of events this drill does not cause, by a fragment of their expression: 429s (the dedicated
# stack's rate limits are out of reach; tests/integration/test_rate_limits.py answers them).
EVENTS_THE_DRILL_DOES_NOT_CAUSE = ('status="429"',)
# Names in PromQL that are functions, keywords or label names, not series.
_NOT_SERIES = {"sum", "rate", "increase", "delta", "max", "min", "avg", "count", "by", "without", "on", "ignoring",
               "and", "or", "unless", "histogram_quantile", "max_over_time", "min_over_time", "avg_over_time",
               "vector", "clamp_min", "clamp_max", "abs", "irate", "topk", "bottomk", "group_left", "group_right",
               "label_replace", "sort", "sort_desc", "time", "scalar", "bool", "offset", "le", "sum_over_time",
               "deriv", "changes", "resets", "absent", "count_over_time", "quantile_over_time", "last_over_time"}


def dashboards_module() -> ModuleType:
    path = REPO_ROOT / "deploy" / "grafana" / "dashboards.py"
    spec = importlib.util.spec_from_file_location("switch_grafana_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def series_names(expr: str) -> set[str]:
    """The metric and recorded-series names an expression reads (label matchers, strings, grouping
    clauses, durations and functions left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {word for word in words if word not in _NOT_SERIES and not re.fullmatch(r"\d+[smhdwy]", word)
            and not word.startswith("$") and (":" in word or "_" in word or word == "up")}


def selectors(expr: str) -> set[str]:
    """The selectors with label matchers an expression reads (`name{label=~"..."}`), as written."""
    return {match.group(0) for match in re.finditer(r'[A-Za-z_:][A-Za-z0-9_:]*\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\}',
                                                    expr)}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as answer:  # noqa: S310 - loopback
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def firing(self) -> set[tuple[str, str]]:
        return {(alert["labels"]["alertname"], alert["labels"].get("network", ""))
                for alert in self.get("/api/v1/alerts")["alerts"] if alert["state"] == "firing"}

    def wait_until_scraped(self, jobs: set[str], timeout_s: float = 30.0) -> None:
        """Until every job has been scraped once: Prometheus hands discovered targets to its scrapers at
        most every 5 s, and a counter's first increase is only seen against an earlier sample."""
        deadline = time.monotonic() + timeout_s
        while {sample["metric"]["job"] for sample in self.query("up == 1")} != jobs:
            assert time.monotonic() < deadline, self.get("/api/v1/targets")
            time.sleep(0.2)

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.get("/api/v1/rules")["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def observed(solo_stack: SoloStack) -> Iterator[tuple[Switch, Prometheus]]:
    if not os.environ.get("CI"):
        try:
            find_prometheus()
        except Exception:  # noqa: BLE001 - a developer's machine without it: make setup installs it
            pytest.skip("prometheus is not installed (make setup installs it)")
    switch = solo_stack.start_switches({"switch-observed": {}}, workers=2)["switch-observed"]
    stack = solo_stack.stack
    stack.switch_ops_url = switch.ops_url
    try:
        prometheus = Prometheus(start_prometheus(stack, SCRAPE_INTERVAL_S))
        prometheus.wait_until_scraped({"switch", "vault", "acquirer_sim", "prometheus"})
        yield switch, prometheus
    finally:
        stack.switch_ops_url = ""
        solo_stack.stop_switch(switch)
        for service in [s for s in stack.services if s.name == "prometheus"]:
            service.process.terminate()
            service.process.wait(timeout=20)
            stack.services.remove(service)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def client(solo_stack: SoloStack, observed: tuple[Switch, Prometheus]) -> AsyncIterator[Client]:
    client = solo_stack.client(observed[0])
    yield client
    await client.close()


PAYMENT_POSTS = {"count": 0}    # POST /v1/payments sent, to check the workers' counts add up


async def pay(client: Client, number: str, amount: int = 1500, capture_method: str = "automatic") -> Any:
    PAYMENT_POSTS["count"] += 1
    return await client.request("POST", "/v1/payments", payment(amount, number, capture_method),
                                idempotency_key=key("observe"))


async def everyday_traffic(client: Client) -> None:
    """Approvals on three networks, declines, a manual capture, a refund and an idempotency conflict."""
    approvals = [pay(client, luhn_card(prefix)) for prefix in ("4", "51", "6011") for _ in range(15)]
    declines = [pay(client, number) for number in (VISA_DECLINE, VISA_INSUFFICIENT) * 3]
    answers = await asyncio.gather(*approvals, *declines)
    assert sorted({answer.status for answer in answers}) == [200, 402], [answer.status for answer in answers]
    held = await pay(client, MASTERCARD_OK, capture_method="manual")
    payment_id = held.json()["id"]
    await client.request("POST", f"/v1/payments/{payment_id}/capture", {}, idempotency_key=key("capture"))
    await client.request("POST", "/v1/refunds", {"payment": payment_id, "amount": 500}, idempotency_key=key("refund"))
    reused = key("reused")
    PAYMENT_POSTS["count"] += 2
    await client.request("POST", "/v1/payments", payment(1000, MASTERCARD_OK), idempotency_key=reused)
    conflict = await client.request("POST", "/v1/payments", payment(2000, MASTERCARD_OK), idempotency_key=reused)
    assert conflict.status == 400, conflict.body


async def blocked_by_a_rule(client: Client) -> None:
    """A BIN on the merchant's block list: a live rule match and a fraud block."""
    listed = await client.request("POST", "/v1/fraud/lists/blocklist", {"value": BLOCKED_BIN},
                                  idempotency_key=key("list"))
    assert listed.status == 200, listed.body
    blocked = await pay(client, luhn_card(BLOCKED_BIN))
    assert (blocked.status, blocked.json()["error"].get("decline_code")) == (402, "fraudulent"), blocked.body


async def late_answer(solo_stack: SoloStack, client: Client) -> None:
    """One mastercard answer after the switch gave up: a timeout and a late response."""
    simulator(solo_stack.stack, "/behaviour", {"network": "mastercard", "late_answer_rate": 1.0,
                                               "late_answer_ms": 1500})
    try:
        assert (await pay(client, luhn_card("51"))).status == 504
        await asyncio.sleep(1.0)
    finally:
        simulator(solo_stack.stack, "/behaviour", {"network": "mastercard", "late_answer_rate": 0.0})


async def kill_one_worker(switch: Switch) -> None:
    before = switch.worker_pids()
    await asyncio.sleep(Flushed.FLUSH_INTERVAL_S + 0.5)   # what the worker counted is in its metric files
    os.kill(before[0], signal.SIGKILL)

    async def replaced() -> bool:
        pids = switch.worker_pids()
        return len(pids) == len(before) and before[0] not in pids

    assert await eventually(replaced, 20.0), "the supervisor did not start the worker again"
    await asyncio.sleep(2.0)                   # the new worker binds its ports


async def silent_network_until_alerts(solo_stack: SoloStack, client: Client, prometheus: Prometheus) -> set[Any]:
    """Visa approves and never answers: payments time out, its breaker opens; keep paying (as merchants
    would) until the drill's alerts fire or the drill's time is up."""
    simulator(solo_stack.stack, "/behaviour", {"network": "visa", "drop_rate": 1.0})
    deadline = time.monotonic() + DRILL_TIMEOUT_S
    firing: set[Any] = set()
    try:
        while time.monotonic() < deadline and not DRILL_ALERTS <= firing:
            await asyncio.gather(*(pay(client, luhn_card("4")) for _ in range(4)), pay(client, luhn_card("51")))
            firing = prometheus.firing()
            await asyncio.sleep(0.5)
    finally:
        simulator(solo_stack.stack, "/behaviour", {"network": "visa", "drop_rate": 0.0})
    return firing


async def test_dashboards_and_rules_read_real_series_and_the_drill_fires_its_alerts(
        solo_stack: SoloStack, observed: tuple[Switch, Prometheus], client: Client) -> None:
    switch, prometheus = observed
    await everyday_traffic(client)
    await blocked_by_a_rule(client)
    await late_answer(solo_stack, client)
    await kill_one_worker(switch)
    await everyday_traffic(client)
    firing = await silent_network_until_alerts(solo_stack, client, prometheus)
    assert DRILL_ALERTS <= firing, f"firing: {sorted(firing)}"
    assert ("SwitchWorkerRestarting", "") in firing, f"firing: {sorted(firing)}"

    # A refund is counted under its payment's network (its answer carries the refund, not the payment).
    assert prometheus.query('switch_payments_total{operation="refund", network="mastercard", result="succeeded"}')

    targets = prometheus.get("/api/v1/targets")["activeTargets"]
    assert {(target["labels"]["job"], target["health"]) for target in targets} == {
        ("switch", "up"), ("vault", "up"), ("acquirer_sim", "up"), ("prometheus", "up")}, targets

    rules = prometheus.rules()
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == [], rules
    missing = [(rule["name"], name) for rule in rules for name in sorted(series_names(rule["query"]))
               if not prometheus.query(f'count({{__name__="{name}"}})')]
    assert missing == [], f"rules read series that do not exist: {missing}"
    unmatched = sorted((rule["name"], selector) for rule in rules for selector in selectors(rule["query"])
                       if not prometheus.query(f"count({selector})"))
    assert unmatched == [], f"rules whose label matchers select nothing: {unmatched}"
    empty_records = [rule["name"] for rule in rules
                     if rule["type"] == "recording" and not prometheus.query(rule["name"])]
    assert empty_records == [], f"recording rules without data: {empty_records}"

    dashboards = dashboards_module()
    queries = dashboards.panel_queries()
    assert len(queries) >= 40, len(queries)
    no_data = [(board, title) for board, title, expr in queries if not prometheus.query(expr)]
    assert no_data == [], f"panels without data: {no_data}"
    unknown = sorted({(board, title, name) for board, title, expr in queries for name in series_names(expr)
                      if not prometheus.query(f'count({{__name__="{name}"}})')})
    assert unknown == [], f"panels reading series that do not exist: {unknown}"
    unmatched = sorted({(board, title, selector) for board, title, expr in queries for selector in selectors(expr)
                        if not any(fragment in selector for fragment in EVENTS_THE_DRILL_DOES_NOT_CAUSE)
                        and not prometheus.query(f"count({selector})")})
    assert unmatched == [], f"panels whose label matchers select nothing: {unmatched}"
    # A panel of events that may not happen reads 0 rather than "No data"; what it counts, without that
    # 0, must have data too, unless the drill cannot make it happen.
    quiet = sorted((board, title, expr) for board, title, expr in queries
                   if (events := ZERO_WHEN_NONE.match(expr)) and not prometheus.query(events["events"])
                   and not any(fragment in expr for fragment in EVENTS_THE_DRILL_DOES_NOT_CAUSE))
    assert quiet == [], f"panels whose events have no data: {quiet}"

    for name, url in (("switch", switch.ops_url), ("vault", solo_stack.stack.vault_ops_url),
                      ("acquirer_sim", solo_stack.stack.simulator_control_url)):
        assert_safe_exposition(name, scrape(url))
    # The workers' counts add up (the killed worker's included): every POST /v1/payments sent is counted,
    # once the workers have handed over their last second (switch.common.metrics.Flushed).
    await asyncio.sleep(Flushed.FLUSH_INTERVAL_S + 0.5)
    counted = sum(value for metric, labels, value in samples(scrape(switch.ops_url))
                  if metric == "switch_http_requests_total" and labels.get("route") == "payments.create")
    assert PAYMENT_POSTS["count"] > 100 and counted == PAYMENT_POSTS["count"]


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # noqa: S310 - loopback
        return str(answer.read().decode())


def samples(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    found = []
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            name, _, labels = head.partition("{")
            found.append((name, dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', labels)), float(value)))
    return found


def assert_safe_exposition(name: str, exposition: str) -> None:
    """No card number, no id of a merchant, payment, token or request, and few values per label (sample
    values left out: a sum of seconds has many digits)."""
    text = "\n".join(line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in exposition.splitlines())
    assert not re.search(r"\d{13,19}", text), f"{name}: a 13-19 digit number in the exposition"
    ids = r"\b(acct|pay|tok|pm|pi|ch|re|evt|req|we|whsec|cus|key|po|prv)_[A-Za-z0-9]{8,}|\b(sk|pk)_(test|live)_"
    assert not re.search(ids, text), f"{name}: an id or key in the exposition"
    values: dict[tuple[str, str], set[str]] = {}
    for metric, labels, _ in samples(exposition):
        for label, value in labels.items():
            values.setdefault((metric, label), set()).add(value)
    wide = {key: len(seen) for key, seen in values.items() if len(seen) > 64 and key[1] != "le"}
    assert wide == {}, f"{name}: labels with many values: {wide}"


def test_selectors_keep_their_matchers() -> None:
    expr = 'sum(rate(switch_http_requests_total{route!~"ops\\\\..*", status=~"5.."}[5m])) / up{job="x"} + vector(1)'
    assert selectors(expr) == {'switch_http_requests_total{route!~"ops\\\\..*", status=~"5.."}', 'up{job="x"}'}


def test_series_names_reads_metric_names_only() -> None:
    expr = ('sum by (network) (rate(switch_payments_total{result="succeeded", network=~"$network"}[5m])) '
            '/ on() group_left max(network:switch_authorizations:rate5m offset 1h) or vector(0) > up')
    assert series_names(expr) == {"switch_payments_total", "network:switch_authorizations:rate5m", "up"}


def test_the_shipped_rules_are_the_ones_prometheus_loads() -> None:
    """The test copies deploy/prometheus; it must not drift from what an operator deploys."""
    shipped = sorted(path.name for path in (REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    assert shipped == ["alerts.yml", "recording.yml"]
    text = (REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "rules/*.yml" in text and Path(REPO_ROOT / "deploy" / "prometheus" / "targets").is_dir()
