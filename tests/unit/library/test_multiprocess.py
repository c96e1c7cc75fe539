"""The multiprocess store: real processes (fork), real mmap files and flock liveness."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from mystocks_otel import catalog
from mystocks_otel._internal.multiprocess import detection, fileformat
from mystocks_otel.catalog import Kind
from mystocks_otel._internal.exposition import families, render_families
from mystocks_otel._internal.instruments import Instruments
from mystocks_otel._internal.multiprocess import Store

FORK = multiprocessing.get_context("fork")


def _worker(directory, values, ready, release):
    """A worker: records, reports ready, then lives until released (or is killed)."""
    inst = Instruments(catalog.METRICS)
    store = Store(directory, inst, os.getppid(), "test")
    orders = inst["mystocks.trading.orders"]
    orders.add(values["orders"], "buy", "market", "filled")
    inst["http.server.active_requests"].add(values["active"], "GET")
    inst["mystocks.health.component_status"].set(values["healthy"], "database")
    inst["mystocks.db.connections_active"].set(values["pool"], "postgresql/app")
    inst["mystocks.cache.memory_usage"].set(values["memory"], "redis")
    inst["mystocks.cache.evictions"].set_total(values["evictions"], "redis")
    latency = inst["mystocks.db.query_duration"]
    latency.exemplar_source = lambda: (values["trace"], 7)
    for v in values["latencies"]:
        latency.record(v, "SELECT", "quotes")
    ready.send(store.slot)
    release.recv()
    os._exit(0)


@pytest.fixture
def run(tmp_path):
    """Start workers in a shared run directory; yields (start, directory)."""
    children = []

    def start(**values):
        ready_recv, ready_send = FORK.Pipe(False)
        release_recv, release_send = FORK.Pipe(False)
        proc = FORK.Process(target=_worker, args=(str(tmp_path), values, ready_send, release_recv))
        proc.start()
        slot = ready_recv.recv()
        children.append((proc, release_send))
        return proc, release_send, slot

    yield start, str(tmp_path)
    for proc, release in children:
        if proc.is_alive():
            release.send(True)
        proc.join(10)


def values(orders, active, healthy, pool, memory, evictions, latencies, trace):
    return dict(orders=orders, active=active, healthy=healthy, pool=pool, memory=memory,
                evictions=evictions, latencies=latencies, trace=trace)


def merged_values(store):
    merged = store.merged()
    return {name: dict(items) for name, (items, _) in merged.items()}, merged


def test_merge_rules_over_live_and_dead_workers(run):
    start, directory = run
    a, release_a, slot_a = start(**values(3, 1, 1, 4, 100, 10, [0.002, 0.3], 0xA))
    b, release_b, slot_b = start(**values(5, 2, 0, 1, 200, 12, [0.002], 0xB))
    assert {slot_a, slot_b} == {0, 1}
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")  # the scraping worker
    assert reader.slot == 2

    got, merged = merged_values(reader)
    assert got["mystocks.trading.orders"] == {("buy", "market", "filled"): 8}
    assert got["http.server.active_requests"] == {("GET",): 3}  # SUM over live workers
    assert got["mystocks.health.component_status"] == {("database",): 0}  # MIN: one is down
    assert got["mystocks.db.connections_active"] == {  # PER_WORKER: a bounded worker label
        ("postgresql/app", str(slot_a)): 4, ("postgresql/app", str(slot_b)): 1}
    assert got["mystocks.cache.memory_usage"] == {("redis",): 200}  # LATEST: b wrote last
    assert got["mystocks.cache.evictions"] == {("redis",): 12}  # MAX for copied totals
    (series,) = got["mystocks.db.query_duration"].values()
    bounds = list(catalog.get("mystocks.db.query_duration").buckets)
    assert series[bounds.index(0.0025)] == 2 and series[bounds.index(0.5)] == 1
    assert sum(series[:len(bounds) + 1]) == 3 and series[len(bounds) + 1] == pytest.approx(0.304)
    (kept,) = merged["mystocks.db.query_duration"][1].values()
    assert kept[bounds.index(0.0025)][0] == 0xB  # the latest exemplar of the bucket wins
    assert kept[bounds.index(0.5)][:2] == (0xA, 7)

    # b dies without a chance to flush: its counts stay, its live values go
    b.kill()
    b.join(10)
    got, _ = merged_values(reader)
    assert got["mystocks.trading.orders"] == {("buy", "market", "filled"): 8}
    assert got["http.server.active_requests"] == {("GET",): 1}
    assert got["mystocks.health.component_status"] == {("database",): 1}
    assert got["mystocks.db.connections_active"] == {("postgresql/app", str(slot_a)): 4}
    assert sum(next(iter(got["mystocks.db.query_duration"].values()))[:len(bounds) + 1]) == 3
    # the dead file was compacted into the dead workers' totals and removed; scrapes agree
    assert merged_values(reader)[0] == got
    (folded,) = reader.merge.folded
    assert folded.startswith(f"{slot_b}-{b.pid}-") and folded.endswith(".db")
    assert folded not in os.listdir(directory) and "dead.totals" in os.listdir(directory)

    # a replacement takes the dead worker's slot: the worker label stays bounded
    c, release_c, slot_c = start(**values(1, 0, 1, 2, 50, 12, [], 0xC))
    assert slot_c == slot_b
    got, _ = merged_values(reader)
    assert got["mystocks.trading.orders"] == {("buy", "market", "filled"): 9}
    assert set(got["mystocks.db.connections_active"]) == {
        ("postgresql/app", str(slot_a)), ("postgresql/app", str(slot_c))}


def test_merged_page_renders_the_worker_label_and_parses(run):
    start, directory = run
    start(**values(2, 0, 1, 3, 1, 1, [0.01], 0xD))
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    inst = Instruments(catalog.METRICS)
    page = render_families(families(inst, reader.merged()), {"service.name": "x"}, openmetrics=True)
    assert 'mystocks_db_connections_active{pool="postgresql/app",worker="0"} 3.0' in page
    assert 'mystocks_trading_orders_total{side="buy",status="filled",type="market"} 2.0' in page
    assert 'trace_id="' in page and page.endswith("# EOF\n")


def test_values_recorded_before_the_store_are_written_and_grow_the_file(tmp_path):
    inst = Instruments(catalog.METRICS, cardinality_limit=10_000)
    namespaces = inst["mystocks.websocket.connections_opened"]
    namespaces.add(5, "/before")
    store = Store(str(tmp_path), inst, os.getpid(), "test")
    for i in range(20_000 // 2):  # ~ 10k entries with long keys: more than the first megabyte
        namespaces.add(1, f"/ws/{'x' * 80}/{i}")
    got = dict(store.merged()["mystocks.websocket.connections_opened"][0])
    assert got[("/before",)] == 5
    assert len(got) == 10_001  # the limit, then the overflow series
    assert sum(got.values()) == 5 + 10_000
    assert os.path.getsize(store.file.path) > fileformat.INITIAL_SIZE


def test_stale_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = FORK.Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    stale = tmp_path / f"{dead.pid}-12345"
    live = tmp_path / f"{os.getpid()}-{detection.start_time(os.getpid())}"
    reused = tmp_path / f"{os.getpid()}-1"  # same pid, another start time
    for directory in (stale, live, reused):
        directory.mkdir()
        (directory / "0-1.db").write_bytes(b"x")
    (tmp_path / "unrelated").mkdir()
    detection.remove_stale_runs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "unrelated"])


def test_a_plain_process_is_single_process_mode():
    assert detection.detect() is None


def test_every_gauge_declares_its_merge_rule():
    for spec in catalog.METRICS:
        if spec.kind in (Kind.GAUGE, Kind.UPDOWN):
            assert spec.multiprocess in catalog.MERGE_RULES, spec.name
        elif spec.kind is Kind.COUNTER:
            assert spec.multiprocess in (None, catalog.SUM, catalog.MAX), spec.name
        else:
            assert spec.multiprocess in (None, catalog.SUM), spec.name
    # a pool belongs to one process: its gauges stay per worker
    for name in ("mystocks.db.connections_active", "mystocks.db.connections_idle",
                 "mystocks.db.connections_open", "mystocks.db.connections_max",
                 "db.client.connection.count"):
        assert catalog.get(name).multiprocess == catalog.PER_WORKER
    # /metrics/list says each metric's rule
    assert catalog.get("mystocks.db.connections_active").as_dict()["multiprocess"] == "worker"
    assert catalog.get("mystocks.trading.orders").as_dict()["multiprocess"] == "sum"
