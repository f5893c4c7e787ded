"""Prometheus metrics of the vault, read from plain numbers at scrape time.

The vault answers a detokenize for every payment, so the request path only adds to integers and a float in
``RequestStats`` (``observe``: about 0.2 us a request, where prometheus-client's own counter and histogram
take 1.2 us); ``VaultCollector`` turns them, the HSM's call counts and the key ring into metric families
when ``/metrics`` is scraped, as the simulator's collector does. The vault is one process, so no
multiprocess mode is needed.

Labels are fixed sets: the operation (``OPERATIONS``, ``vault.hsm.HSM_OPERATIONS``) and the result
(``RESULTS``). Never a merchant id, token, PAN, key label or any other card data.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from switch.vault_protocol import VAULT_ERROR_CODES

CONTENT_TYPE = CONTENT_TYPE_LATEST

# public_tokenize: POST /v1/tokens on the vault's public HTTP port (vault/public_api.py).
OPERATIONS = ("tokenize", "detokenize", "mac_key", "ping", "public_tokenize")
# "rate_limited": the public endpoint's per-key limit (HTTP 429), which has no VaultError code.
RESULTS = frozenset({"ok", "rate_limited", "other"} | VAULT_ERROR_CODES)
# A detokenize takes ~100 us to a few ms; a tokenize waits for its INSERT; 1 s is far past any budget.
DURATION_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 0.5, 1.0)
_BUCKET_LABELS = [floatToGoString(bound) for bound in DURATION_BUCKETS_S] + ["+Inf"]


class OperationStats:
    """One operation's answers by result and its durations, bucketed as the histogram will show them."""

    __slots__ = ("results", "bucket_counts", "seconds_sum")

    def __init__(self) -> None:
        self.results: dict[str, int] = {}
        self.bucket_counts = [0] * (len(DURATION_BUCKETS_S) + 1)   # not cumulative; the last one is +Inf
        self.seconds_sum = 0.0


class RequestStats:
    """Plain counters the request path adds to. Only the event loop's thread writes them."""

    def __init__(self) -> None:
        self.operations = {operation: OperationStats() for operation in OPERATIONS}
        self.tokens_written = 0             # tokenizes that stored a card new to its merchant

    def observe(self, operation: str, result: str, seconds: float) -> None:
        """Count one answer. ``operation`` is one of OPERATIONS; a result outside RESULTS reads "other"."""
        stats = self.operations[operation]
        if result not in RESULTS:
            result = "other"
        results = stats.results
        results[result] = results.get(result, 0) + 1
        # bisect_left: a duration equal to a bound belongs to that bucket (Prometheus' "le").
        stats.bucket_counts[bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        stats.seconds_sum += seconds


class VaultCollector(Collector):
    """Metric families built at scrape time from the request stats, the HSM's call counts and the key ring.

    ``hsm_operations`` and ``key_versions`` are callables so the collector holds no HSM or key object:
    ``hsm_operations()`` returns call counts by ``vault.hsm.HSM_OPERATIONS`` name; ``key_versions()``
    returns (the versions loaded, the active version). ``batches()`` returns (statements, items) of each
    group-committed card path (``Vault.batch_counts``): items per statement is the batching achieved.
    """

    def __init__(self, stats: RequestStats, hsm_operations: Callable[[], dict[str, int]],
                 key_versions: Callable[[], tuple[list[int], int]],
                 batches: Callable[[], dict[str, tuple[int, int]]] = dict) -> None:
        self.stats = stats
        self.hsm_operations = hsm_operations
        self.key_versions = key_versions
        self.batches = batches

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        hsm = CounterMetricFamily("vault_hsm_operations", "Calls into the HSM (PKCS#11), by operation",
                                  labels=["operation"])
        for operation, count in sorted(self.hsm_operations().items()):
            hsm.add_metric([operation], count)
        yield hsm
        versions, active = self.key_versions()
        yield GaugeMetricFamily("vault_key_versions", "Data-key versions loaded (unwrapped) in memory",
                                value=len(versions))
        yield GaugeMetricFamily("vault_key_version_active", "The data-key version new cards are encrypted with",
                                value=active)
        yield CounterMetricFamily("vault_tokens_written", "Cards stored new for their merchant by a tokenize",
                                  value=self.stats.tokens_written)
        statements = CounterMetricFamily("vault_db_batches", "Statements sent by a group-committed card path "
                                         "(tokenize writes, detokenize lookups)", labels=["operation"])
        items = CounterMetricFamily("vault_db_batch_items", "Requests those statements carried",
                                    labels=["operation"])
        for operation, (batch_count, item_count) in sorted(self.batches().items()):
            statements.add_metric([operation], batch_count)
            items.add_metric([operation], item_count)
        yield statements
        yield items

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("vault_requests", "Vault requests answered, by operation and result "
                                       "(ok or the error code)", labels=["operation", "result"])
        durations = HistogramMetricFamily("vault_request_duration_seconds",
                                          "Time from a request's arrival to its answer", labels=["operation"])
        for operation, stats in self.stats.operations.items():
            results = dict(stats.results)
            results.setdefault("ok", 0)     # a series from the start, so rate() sees the first requests
            for result, count in sorted(results.items()):
                requests.add_metric([operation, result], count)
            cumulative, buckets = 0, []
            for label, count in zip(_BUCKET_LABELS, stats.bucket_counts, strict=True):
                cumulative += count
                buckets.append((label, cumulative))
            durations.add_metric([operation], buckets, stats.seconds_sum)
        yield requests
        yield durations


def registry_for(collector: VaultCollector) -> CollectorRegistry:
    """The vault's own registry: its collector and the process' CPU, memory and file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
