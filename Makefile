# Payment switch: every target sets itself up (system packages when root, .venv) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := redis-server softhsm2 postgresql
# Without its recommended node exporter, which would listen on every interface.
MONITORING_PACKAGES := prometheus
BENCH_ARGS ?=
BASE ?= HEAD~1
CHANGE ?= HEAD
PAIRS ?= 3
LOCUST_ARGS ?=
# Debian's package starts a Prometheus of its own on every interface where an init system runs; the
# project starts its own on loopback (make observe, the tests), so the packaged service is stopped.
STOP_PACKAGED_PROMETHEUS := (systemctl disable --now prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true)

.DEFAULT_GOAL := help
.PHONY: help setup system-packages demo up observe test test-unit bench bench-pair locust bench-network fraud-drill settlement-drill settlement-bench webhook-drill openapi lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: system-packages $(STAMP) ## install system packages (when root) and the project into .venv

system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v softhsm2-util >/dev/null || missing="$$missing softhsm2"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(MONITORING_PACKAGES) && \
	    $(STOP_PACKAGED_PROMETHEUS); \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run: sudo apt-get install -y $(SYSTEM_PACKAGES) && sudo apt-get install -y --no-install-recommends $(MONITORING_PACKAGES)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]' -e ./sdk
	touch $(STAMP)

demo: setup ## start the whole stack, run a scripted payment flow over HTTP, tear it all down
	$(PY) -m switch.dev.devstack demo

up: setup ## run the whole stack in the foreground; prints READY url=... api_key=...; Ctrl-C stops it
	$(PY) -m switch.dev.devstack up

observe: setup ## the whole stack plus Prometheus with the shipped rules, on loopback; prints the URLs
	$(PY) -m switch.dev.observe

test: setup ## the whole test suite (real Postgres, Redis, SoftHSM2 and simulator, started by the harness)
	$(PY) -m pytest

test-unit: setup ## only the tests of pure logic (no services)
	$(PY) -m pytest tests/unit

bench: setup ## load the stack with the Black-Friday mix over HTTP (loadtest/mix.py); prints the RESULT line
	$(PY) -m loadtest.bench $(BENCH_ARGS)

bench-pair: setup ## two git revisions (BASE, CHANGE) benched at once, PAIRS times, BENCH_ARGS to both; prints PAIR
	$(PY) -m loadtest.pair --base $(BASE) --change $(CHANGE) --pairs $(PAIRS) -- $(BENCH_ARGS)

locust: setup ## the Locust Black-Friday shape, headless on the stack (about 3 min); prints LOCUST, keeps the reports
	$(PY) -m loadtest.locust_run $(LOCUST_ARGS)

fraud-drill: setup ## legitimate traffic beside card testing and a stolen-card spree; prints FRAUD
	$(PY) -m loadtest.fraud_drill

webhook-drill: setup ## payments with a receiver failing 30 % at random; prints WEBHOOKS
	$(PY) -m loadtest.webhook_drill $(WEBHOOK_DRILL_ARGS)

settlement-drill: setup ## a day of traffic, planted discrepancies, the import; prints SETTLEMENT
	$(PY) -m loadtest.settlement_drill $(SETTLEMENT_DRILL_ARGS)

settlement-bench: setup ## a 1,000,000-line settlement file imported and matched; prints SETTLEMENT_BENCH
	$(PY) -m loadtest.settlement_bench $(SETTLEMENT_BENCH_ARGS)

bench-network: setup ## codec µs per 0100 and link round trips/s (simulator subprocess); prints NETBENCH
	$(PY) -m loadtest.netbench $(NETBENCH_ARGS)

openapi: setup ## regenerate docs/openapi.json from the route table and the types (tests fail when it is stale)
	$(PY) -c "from switch.frontends import openapi; open('docs/openapi.json', 'wb').write(openapi.encoded())"

lint: setup ## ruff, mypy, the import contracts (import-linter, see pyproject.toml), promtool on deploy/prometheus
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml

clean: ## remove run directories and caches (not .venv)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache .hypothesis
