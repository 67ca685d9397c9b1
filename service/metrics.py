"""Prometheus metrics through prometheus_client: request counts and durations recorded as each
request ends; the key cache, the verifier and the pool read when /metrics is scraped.

With several workers, `python -m service run` gives them one PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode): each process writes its values to files there, and a
scrape answered by any worker sums them all. What a worker holds in memory (key cache, verifier,
pool) is copied to its files when that worker is scraped and every PUBLISH_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest, values
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # `python -m service` imports this before it needs the auth code
    from .auth.jwks import JWKSCache
    from .auth.tokens import TokenVerifier

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PUBLISH_INTERVAL_SECONDS = 5.0


class _ProcessId:
    """This process's id, asked for once and again after a fork: prometheus_client's
    multiprocess values check it on every update, and os.getpid() is a system call (three a
    request, ~4 % of a worker's CPU in the bench)."""

    value = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.value = os.getpid()

    @classmethod
    def get(cls) -> int:
        return cls.value


os.register_at_fork(after_in_child=_ProcessId.refresh)


@cache
def _multiprocess_value_class() -> type:
    """One per process: every metric of the process must write through the same open files."""
    value_class: type = values.MultiProcessValue(process_identifier=_ProcessId.get)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    return value_class


# The *_created series double the output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

GaugeMode = Literal["livesum", "livemin", "livemax"]


@dataclass(frozen=True)
class Family:
    name: str
    kind: Literal["counter", "gauge", "summary"]
    help: str
    labels: tuple[str, ...] = ()
    mode: GaugeMode = "livesum"  # how the workers' values of a gauge combine


STATS = (
    Family("jwks_fetches_total", "counter", "JWKS fetches by result.", ("result",)),
    Family("jwks_fetch_seconds", "summary", "Time spent fetching the JWKS."),
    Family("jwks_unknown_kid_refetches_total", "counter", "Fetches scheduled because a token named an unknown kid."),
    Family("jwks_cooldown_waits_total", "counter", "Requests that waited for the next allowed fetch."),
    Family("jwks_rate_limited_total", "counter", "429/503 answers from the JWKS host, each honoured."),
    Family("jwks_keys", "gauge", "Usable keys held (with several workers: the fewest any holds).", mode="livemin"),
    Family(
        "jwks_stale_seconds", "gauge", "Age of the key set held, -1 for none (workers: the oldest).", mode="livemax"
    ),
    Family("token_cache_lookups_total", "counter", "Verified-token cache lookups.", ("result",)),
    Family("token_cache_evictions_total", "counter", "Verified tokens dropped to make room."),
    Family("token_cache_entries", "gauge", "Verified tokens held."),
    Family("token_verifications_total", "counter", "Bearer verifications by outcome.", ("outcome",)),
    Family("session_checks_total", "counter", "SESSION_CHECK=http lookups by result.", ("result",)),
    Family("db_pool_connections", "gauge", "Database connections by state.", ("state",)),
)


class Reading(NamedTuple):
    family: str
    labels: tuple[str, ...]
    value: float
    total: float = 0.0  # summaries: the sum of the `value` observations


class PoolSizes(Protocol):
    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...


class StatsSource(Protocol):
    """What the app's resources offer to the metrics (the pool: an asyncpg.Pool)."""

    @property
    def jwks(self) -> JWKSCache: ...
    @property
    def verifier(self) -> TokenVerifier: ...
    @property
    def pool(self) -> PoolSizes: ...


def read_stats(resources: StatsSource) -> list[Reading]:
    """The one place that reads the key cache's, the verifier's and the pool's figures."""
    stats = resources.jwks.stats
    held = resources.jwks.usable_set()
    stale = resources.jwks.stale_seconds()
    verifier = resources.verifier
    return [
        Reading("jwks_fetches_total", ("ok",), stats.ok),
        Reading("jwks_fetches_total", ("failed",), stats.failed),
        Reading("jwks_fetch_seconds", (), stats.ok + stats.failed, stats.fetch_seconds_total),
        Reading("jwks_unknown_kid_refetches_total", (), stats.unknown_kid_refetches),
        Reading("jwks_cooldown_waits_total", (), stats.cooldown_waits),
        Reading("jwks_rate_limited_total", (), stats.rate_limited),
        Reading("jwks_keys", (), len(held.keys) if held else 0),
        Reading("jwks_stale_seconds", (), -1.0 if stale is None else stale),
        Reading("token_cache_lookups_total", ("hit",), verifier.cache_hits),
        Reading("token_cache_lookups_total", ("miss",), verifier.cache_misses),
        Reading("token_cache_evictions_total", (), verifier.cache_evictions),
        Reading("token_cache_entries", (), verifier.cache_size),
        *(Reading("token_verifications_total", (str(o),), n) for o, n in sorted(verifier.outcomes.items())),
        *(Reading("session_checks_total", (r,), n) for r, n in verifier.session_check_counts().items()),
        Reading("db_pool_connections", ("total",), resources.pool.get_size()),
        Reading("db_pool_connections", ("idle",), resources.pool.get_idle_size()),
    ]


class StatsCollector(Collector):
    """One process: the readings become metric families at scrape time."""

    def __init__(self, read: Callable[[], list[Reading]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for family in STATS:
            labels = list(family.labels)
            if family.kind == "counter":
                families[family.name] = CounterMetricFamily(family.name, family.help, labels=labels)
            elif family.kind == "summary":
                families[family.name] = SummaryMetricFamily(family.name, family.help, labels=labels)
            else:
                families[family.name] = GaugeMetricFamily(family.name, family.help, labels=labels)
        for reading in self._read():
            metric = families[reading.family]
            if isinstance(metric, SummaryMetricFamily):
                metric.add_metric(list(reading.labels), count_value=int(reading.value), sum_value=reading.total)
            else:
                metric.add_metric(list(reading.labels), reading.value)  # type: ignore[attr-defined]  # both families have it
        return families.values()


class StatsPublisher:
    """Several processes: copies this worker's readings to its files in the shared directory."""

    def __init__(self, read: Callable[[], list[Reading]]) -> None:
        self._read = read
        self._metrics: dict[str, Counter | Gauge | Summary] = {}
        for family in STATS:
            if family.kind == "counter":
                self._metrics[family.name] = Counter(family.name, family.help, family.labels, registry=None)
            elif family.kind == "summary":
                self._metrics[family.name] = Summary(family.name, family.help, family.labels, registry=None)
            else:
                self._metrics[family.name] = Gauge(
                    family.name, family.help, family.labels, registry=None, multiprocess_mode=family.mode
                )
        self._published: dict[tuple[str, tuple[str, ...]], Reading] = {}

    def publish(self) -> None:
        for reading in self._read():
            metric = self._metrics[reading.family]
            child = metric.labels(*reading.labels) if reading.labels else metric
            if isinstance(child, Gauge):
                child.set(reading.value)
                continue
            key = (reading.family, reading.labels)
            before = self._published.get(key, Reading(reading.family, reading.labels, 0.0))
            added = reading.value - before.value
            if isinstance(child, Counter) and added > 0:
                child.inc(added)
            elif isinstance(child, Summary) and added >= 1:
                # A summary file holds a count and a sum: `added` observations of their mean time.
                for _ in range(int(added)):
                    child.observe((reading.total - before.total) / int(added))
            self._published[key] = reading


class RequestMetrics:
    """Requests by method, route template and status; durations by route template."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Requests by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.durations = Histogram(
            "http_request_duration_seconds",
            "Time to the end of the response, by route template.",
            ("route",),
            buckets=DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        # labels() takes a lock and builds a key on every call; the children are looked up once.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.durations.labels(route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


class ServiceMetrics:
    """Everything /metrics answers for one app, in one process or across workers."""

    def __init__(self, read: Callable[[], list[Reading]]) -> None:
        self.registry = CollectorRegistry()
        self.shared_dir = os.environ.get(MULTIPROC_DIR_VARIABLE) or None
        self._publisher: StatsPublisher | None = None
        if self.shared_dir is None:
            self.requests = RequestMetrics(self.registry)
            self.registry.register(StatsCollector(read))
        else:
            values.ValueClass = _multiprocess_value_class()  # before any metric of this process
            self.requests = RequestMetrics(registry=None)  # written to the shared files
            self._publisher = StatsPublisher(read)
            MultiProcessCollector(self.registry, self.shared_dir)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

    def render(self) -> bytes:
        if self._publisher is not None and self.shared_dir is not None:
            self._publisher.publish()
            forget_dead_workers(self.shared_dir)
        return generate_latest(self.registry)

    @contextlib.asynccontextmanager
    async def publishing(self) -> AsyncIterator[None]:
        """While the app runs: this worker's figures reach the shared files, so a scrape answered
        by another worker sees them; on the way out its live gauges leave the sums."""
        if self._publisher is None or self.shared_dir is None:
            yield
            return
        task = asyncio.create_task(self._publish_every(self._publisher), name="metrics-publisher")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

    @staticmethod
    async def _publish_every(publisher: StatsPublisher) -> None:
        while True:
            publisher.publish()
            await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)


def forget_dead_workers(shared_dir: str) -> None:
    """Drop the live gauges of workers that died without shutting down (uvicorn restarts them)."""
    for path in Path(shared_dir).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            mark_process_dead(int(pid), shared_dir)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def shared_dir_for_workers() -> Iterator[Path]:
    """For `python -m service run` with several workers, before they start: an empty directory
    for their metric files, in the environment they inherit. One given in PROMETHEUS_MULTIPROC_DIR
    is emptied (a previous run's counts would add to ours); otherwise a fresh one is made and removed."""
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="tasks-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)
