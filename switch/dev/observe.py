"""`make observe`: the whole dev stack plus Prometheus (Debian's `prometheus` package) with the shipped
configuration and rules (deploy/prometheus/), everything on loopback. Prints the URLs and runs until Ctrl-C.

The configuration is the checked-in one: it is copied into the run directory with its rules, the scrape
and evaluation intervals set for a quick look, and its target files (file service discovery) written
with the ports the stack picked. The test of the dashboards and rules (tests/integration/
test_observability.py) starts Prometheus the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from switch.dev.devstack import REPO_ROOT, Stack, StackError, free_port, new_run_dir, serve_until_signal

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
READY_TIMEOUT_S = 30.0


def find_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise StackError("prometheus not found (apt-get install prometheus, or run `make setup`)")
    return path


def stack_targets(stack: Stack) -> dict[str, list[str]]:
    """Each scrape job's host:port, from the URLs the stack's processes serve their metrics on."""
    urls = {"switch": stack.switch_ops_url, "vault": stack.vault_ops_url, "acquirer_sim": stack.simulator_control_url}
    return {job: [urlsplit(url).netloc] for job, url in urls.items() if url}


def write_config(directory: Path, targets: dict[str, list[str]], port: int, interval_s: float = 15.0) -> Path:
    """The shipped prometheus.yml and rules under `directory`, with `interval_s` for scraping and rule
    evaluation, the self-scrape on `port`, and one target file per job."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROMETHEUS_DIR / "rules", directory / "rules", dirs_exist_ok=True)
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    for key in ("scrape_interval", "evaluation_interval"):
        text = text.replace(f"  {key}: 15s", f"  {key}: {interval_s:g}s")
    text = text.replace("scrape_timeout: 5s", f"scrape_timeout: {min(5.0, interval_s):g}s")
    text = text.replace("127.0.0.1:9090", f"127.0.0.1:{port}")
    config = directory / "prometheus.yml"
    config.write_text(text)
    (directory / "targets").mkdir(exist_ok=True)
    for job in ("switch", "vault", "acquirer_sim"):
        entries = [{"targets": targets.get(job, []), "labels": {"service": job}}]
        (directory / "targets" / f"{job}.json").write_text(json.dumps(entries))
    return config


def start_prometheus(stack: Stack, interval_s: float = 15.0) -> str:
    """Prometheus scraping `stack`, as a service of the stack (stopped with it); returns its URL."""
    directory = stack.run_dir / "prometheus"
    port = free_port()
    config = write_config(directory, stack_targets(stack), port, interval_s)
    stack.spawn("prometheus", [find_prometheus(), f"--config.file={config}",
                               f"--storage.tsdb.path={directory / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"])
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    return url


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as answer:  # noqa: S310 - loopback only
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise StackError(f"prometheus at {url} was not ready within {READY_TIMEOUT_S:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switch.dev.observe", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval-s", type=float, default=5.0, help="scrape and rule evaluation interval")
    args = parser.parse_args(argv)
    run_dir = new_run_dir()
    stack = Stack(run_dir=run_dir)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        stack.start_all(workers=args.workers)
        prometheus_url = start_prometheus(stack, args.interval_s)
        print(f"READY url={stack.switch_url} api_key={stack.api_key} prometheus={prometheus_url}", flush=True)
        print(f"  alerts: {prometheus_url}/alerts  rules: {prometheus_url}/rules  targets: {prometheus_url}/targets\n"
              f"  metrics: switch {stack.switch_ops_url}/metrics  vault {stack.vault_ops_url}/metrics  "
              f"simulator {stack.simulator_control_url}/metrics\n"
              "  dashboards: deploy/grafana/ (import them into a Grafana of yours: deploy/grafana/README.md)\n"
              "  Ctrl-C stops everything", flush=True)
        serve_until_signal(stack)
        return 0
    except StackError as error:
        print(f"observe: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
