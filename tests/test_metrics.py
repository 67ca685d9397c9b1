"""service/metrics.py: /metrics through prometheus_client, stats read at scrape time, HELP and TYPE
on every series, escaped labels, and the multiprocess files that several workers share."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import (
    MULTIPROC_DIR_VARIABLE,
    STATS,
    Reading,
    ServiceMetrics,
    forget_dead_workers,
    shared_dir_for_workers,
)
from service.settings import REPO_ROOT
from support.app import create

EXPECTED_TYPES = {
    "http_requests": "counter",
    "http_request_duration_seconds": "histogram",
    "jwks_fetches": "counter",
    "jwks_fetch_seconds": "summary",
    "jwks_unknown_kid_refetches": "counter",
    "jwks_cooldown_waits": "counter",
    "jwks_keys": "gauge",
    "jwks_stale_seconds": "gauge",
    "token_cache_lookups": "counter",
    "token_cache_evictions": "counter",
    "token_cache_entries": "gauge",
    "token_verifications": "counter",
    "db_pool_connections": "gauge",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_every_series_has_help_and_type_and_keeps_its_name(client, alice):
    await create(client, alice)
    text = (await client.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: families[name].type for name in EXPECTED_TYPES if name in families} == EXPECTED_TYPES
    assert all(family.documentation for family in families.values())
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert lines[index - 1].startswith(f"# HELP {name} "), lines[index - 1 : index + 1]
    response = await client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_key_cache_verifier_and_pool_are_read_at_scrape_time(client, alice):
    before = samples((await client.get("/metrics")).text)
    await client.get(alice.url(), headers=alice.headers)
    await client.get(alice.url(), headers=alice.headers)
    after = samples((await client.get("/metrics")).text)
    ok = ("token_verifications_total", (("outcome", "ok"),))
    hit = ("token_cache_lookups_total", (("result", "hit"),))
    miss = ("token_cache_lookups_total", (("result", "miss"),))
    assert after[ok] - before.get(ok, 0) == 2
    assert (after[miss] - before.get(miss, 0), after[hit] - before.get(hit, 0)) == (1, 1)
    assert after[("token_cache_entries", ())] == 1
    assert after[("jwks_fetches_total", (("result", "ok"),))] == 1
    assert after[("jwks_keys", ())] == 1
    pool = client.app.state.resources.pool
    assert after[("db_pool_connections", (("state", "total"),))] == pool.get_size()
    assert after[("db_pool_connections", (("state", "idle"),))] == pool.get_idle_size()


def test_label_values_are_escaped():
    metrics = ServiceMetrics(lambda: [Reading("token_verifications_total", ('say "hi"\\\n',), 3)])
    metrics.requests.observe("GET", '/a"b\\c\nd', 200, 0.01)
    text = metrics.render().decode()
    assert 'route="/a\\"b\\\\c\\nd"' in text
    assert 'token_verifications_total{outcome="say \\"hi\\"\\\\\\n"} 3.0' in text
    assert samples(text)[("http_requests_total", (("method", "GET"), ("route", '/a"b\\c\nd'), ("status", "200")))] == 1


def test_every_stats_family_is_declared_once_with_help():
    names = [family.name for family in STATS]
    assert len(names) == len(set(names)) and all(family.help for family in STATS)


# -- several processes sharing PROMETHEUS_MULTIPROC_DIR ----------------------------------------

WORKER = textwrap.dedent(
    """
    import sys
    from service.metrics import Reading, ServiceMetrics

    requests, entries = int(sys.argv[1]), float(sys.argv[2])
    readings = [
        Reading("token_verifications_total", ("ok",), requests),
        Reading("jwks_fetch_seconds", (), 2, 0.5),
        Reading("token_cache_entries", (), entries),
        Reading("jwks_keys", (), entries),
    ]
    metrics = ServiceMetrics(lambda: readings)
    for _ in range(requests):
        metrics.requests.observe("GET", "/api/{user_id}/tasks", 200, 0.02)
    metrics.render()  # a scrape publishes this worker's readings
    print("published", flush=True)
    sys.stdin.read()  # alive until the test closes stdin
    """
)


def start_worker(shared: Path, requests: int, entries: float) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROC_DIR_VARIABLE: str(shared)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(requests), str(entries)],
        cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stdout is not None and worker.stdout.readline() == "published\n"
    return worker


def merged(shared: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(shared))
    return samples(generate_latest(registry).decode())


def test_workers_counts_add_up_and_a_dead_workers_gauges_leave_the_sums(tmp_path):
    workers = [start_worker(tmp_path, 3, 10), start_worker(tmp_path, 4, 20)]
    try:
        both = merged(tmp_path)
        assert (
            both[("http_requests_total", (("method", "GET"), ("route", "/api/{user_id}/tasks"), ("status", "200")))]
            == 7
        )
        assert both[("http_request_duration_seconds_count", (("route", "/api/{user_id}/tasks"),))] == 7
        assert both[("token_verifications_total", (("outcome", "ok"),))] == 7
        assert (both[("jwks_fetch_seconds_count", ())], both[("jwks_fetch_seconds_sum", ())]) == (4, 1.0)
        assert both[("token_cache_entries", ())] == 30  # livesum
        assert both[("jwks_keys", ())] == 10  # livemin

        workers[0].kill()  # no shutdown: its files stay, as after a crash
        workers[0].wait(timeout=10)
        forget_dead_workers(str(tmp_path))
        after = merged(tmp_path)
        assert after[("token_verifications_total", (("outcome", "ok"),))] == 7  # counts stay
        assert after[("token_cache_entries", ())] == 20  # only the live worker's
        assert after[("jwks_keys", ())] == 20
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=10)


def test_shared_dir_for_workers_is_fresh_and_removed(monkeypatch):
    monkeypatch.delenv(MULTIPROC_DIR_VARIABLE, raising=False)
    with shared_dir_for_workers() as shared:
        assert os.environ[MULTIPROC_DIR_VARIABLE] == str(shared) and shared.is_dir()
        assert not any(shared.iterdir())
    assert not shared.exists() and MULTIPROC_DIR_VARIABLE not in os.environ


def test_a_given_shared_dir_is_emptied_of_an_earlier_runs_files(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old counts")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_DIR_VARIABLE, str(tmp_path))
    with shared_dir_for_workers() as shared:
        assert shared == tmp_path and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert tmp_path.is_dir()


FORKING_WORKER = textwrap.dedent(
    """
    import os
    import sys
    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics(lambda: [])
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(1) if event == "c_call" and arg is os.getpid else None)
    for _ in range(100):
        metrics.requests.observe("GET", "/api/{user_id}/tasks", 200, 0.02)
    sys.setprofile(None)
    child = os.fork()
    if child == 0:  # a forked worker writes to files of its own
        metrics.requests.observe("GET", "/api/{user_id}/tasks", 200, 0.02)
        os._exit(0)
    os.waitpid(child, 0)
    print(len(calls), child, flush=True)
    """
)


def test_metric_updates_ask_for_the_process_id_once_and_again_after_a_fork(tmp_path):
    env = {**os.environ, MULTIPROC_DIR_VARIABLE: str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", FORKING_WORKER], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    calls, child = (int(word) for word in done.stdout.split())
    assert calls == 0  # 100 requests' counter and histogram updates, no os.getpid()
    assert (tmp_path / f"counter_{child}.db").exists()
    totals = merged(tmp_path)
    assert totals[("http_request_duration_seconds_count", (("route", "/api/{user_id}/tasks"),))] == 101
