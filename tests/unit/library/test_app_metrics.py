"""The app's own OpenTelemetry instruments: bounded recorders, naming, the merge over workers
(real forked processes, real mmap files), and the OTLP join (a real SDK reader).

Each test uses its own recorders (``Instruments`` / ``AppInstruments``) and meters made on an
``AppMeterProvider`` directly, never the process-wide ones.
"""

from __future__ import annotations

import math
import multiprocessing
import os

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

from mystocks_otel import catalog
from mystocks_otel._internal import app_metrics, exposition, state
from mystocks_otel._internal.app_meters import AppMeterProvider
from mystocks_otel._internal.app_metrics import AppInstruments, AppSpec
from mystocks_otel._internal.instruments import Instruments
from mystocks_otel._internal.multiprocess import Store
from mystocks_otel._internal.sdk_bridge import InMemoryReader

FORK = multiprocessing.get_context("fork")


def fresh(limit: int = 2000) -> tuple[Instruments, AppInstruments, AppMeterProvider]:
    instruments = Instruments(catalog.METRICS, cardinality_limit=limit)
    app = AppInstruments(instruments)
    return instruments, app, AppMeterProvider(app)


def page(instruments, app, merged=None, store=None) -> dict:
    """``{sample name: {labels: value}}`` of the rendered page (the exposition's own code)."""
    found = exposition.unique([*exposition.families(instruments, merged),
                               *exposition.app_families(app, store, merged)])
    text = exposition.render_families(found, {})
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_instruments_render_with_the_exporters_naming_unit_and_description():
    instruments, app, provider = fresh()
    meter = provider.get_meter("shop", "1.0")
    meter.create_counter("shop.widgets.sold", "{widget}", "Widgets sold.").add(2, {"color": "red"})
    meter.create_histogram("shop.sale.duration", "s", "Sale time.",
                           explicit_bucket_boundaries_advisory=[0.1, 1.0]).record(0.5)
    meter.create_up_down_counter("shop.queue", "{item}").add(-3)
    meter.create_gauge("shop.temperature", "Cel").set(21.5, {"room": "a"})
    meter.create_histogram("shop.payload", "By").record(300)
    got = page(instruments, app)
    assert got["shop_widgets_sold_total"] == {(("color", "red"),): 2}
    assert got["shop_sale_duration_seconds_bucket"][(("le", "1.0"),)] == 1
    assert got["shop_sale_duration_seconds_bucket"][(("le", "0.1"),)] == 0
    assert got["shop_queue"] == {(): -3}
    assert got["shop_temperature_celsius"] == {(("room", "a"),): 21.5}
    # no advisory: the SDK's default buckets
    les = [dict(k)["le"] for k in got["shop_payload_bytes_bucket"]]
    assert "10000.0" in les and "+Inf" in les
    text = exposition.render_families(exposition.app_families(app, None, None), {})
    assert "# HELP shop_widgets_sold_total Widgets sold." in text
    assert "# TYPE shop_queue gauge" in text


def test_cardinality_limit_overflow_and_bad_values_are_counted():
    instruments, app, provider = fresh(limit=3)
    counter = provider.get_meter("shop").create_counter("shop.hits")
    for n in range(5):
        counter.add(1, {"user": str(n)})
    counter.add(float("nan"))
    counter.add(-1)
    counter.add(1, {"tags": ["a", "b"]})  # a sequence value: one series, no exception
    series = dict(app.get("shop.hits").snapshot())
    assert len(series) == 4  # the limit, plus the overflow series
    assert sum(series.values()) == 6  # totals stay right
    sanitized = instruments["mystocks.telemetry.sanitized_attributes"]
    dropped = instruments["mystocks.telemetry.dropped_measurements"]
    # each measurement past the limit is counted: users 3 and 4, no attributes (twice), tags
    assert sanitized.value("shop.hits", "overflow") == 5
    assert dropped.value("shop.hits", "nan") == 1
    assert dropped.value("shop.hits", "negative") == 1
    got = page(instruments, app)
    assert got["shop_hits_total"][(("otel_metric_overflow", "true"),)] == 3


def test_our_names_and_conflicting_kinds_record_nothing():
    instruments, app, provider = fresh()
    fastapi = provider.get_meter("fastapi")
    fastapi.create_histogram("http.server.request.duration", "s").record(1.0)
    fastapi.create_up_down_counter("http.server.active_requests").add(1)
    meter = provider.get_meter("shop")
    meter.create_counter("shop.x").add(1)
    meter.create_histogram("shop.x").record(5)  # same name, another kind: a no-op
    meter.create_counter("bad name!").add(1)
    assert len(app) == 1
    assert not instruments["http.server.request.duration"].snapshot()
    assert page(instruments, app)["shop_x_total"] == {(): 1}


def test_observable_instruments_are_observed_at_render():
    instruments, app, provider = fresh()
    level = {"value": 4}

    def callback(options: CallbackOptions):
        return [Observation(level["value"], {"pool": "main"})]

    meter = provider.get_meter("shop")
    meter.create_observable_gauge("shop.level", [callback])
    meter.create_observable_counter("shop.done", [lambda o: [Observation(7)]])
    app.observe_all()
    assert page(instruments, app)["shop_level"] == {(("pool", "main"),): 4}
    level["value"] = 9
    app.observe_all()
    got = page(instruments, app)
    assert got["shop_level"] == {(("pool", "main"),): 9}
    assert got["shop_done_total"] == {(): 7}


class _Unprintable:
    def __str__(self):
        raise RuntimeError("no text")


def test_bad_attributes_and_raising_callbacks_are_counted_never_raised():
    instruments, app, provider = fresh()
    meter = provider.get_meter("shop")
    counter = meter.create_counter("shop.hits")
    counter.add(1, {1: "a", "b": 2})  # keys that do not sort together
    meter.create_histogram("shop.time").record(1.0, {"x": _Unprintable()})
    meter.create_gauge("shop.level").set(1.0, {"x": _Unprintable()})
    counter.add(2, {"ok": "yes"})

    def broken(options):
        raise RuntimeError("the app's bug")

    meter.create_observable_gauge("shop.pool", [broken, lambda o: [Observation(3)]])
    app.observe_all()
    dropped = instruments.counter("mystocks.telemetry.dropped_measurements")
    for name in ("shop.hits", "shop.time", "shop.level", "shop.pool"):
        assert dropped.value(name, "error") == 1, name
    got = page(instruments, app)
    assert got["shop_hits_total"] == {(("ok", "yes"),): 2}
    assert got["shop_pool"] == {(): 3}  # the other callback still ran


def test_names_that_are_not_text_make_a_no_op_instrument():
    _, app, provider = fresh()
    meter = provider.get_meter("shop")
    for name in (None, 5, b"shop.bytes"):
        meter.create_counter(name).add(1)
        meter.create_histogram(name).record(1)
    assert len(app) == 0


def test_instruments_meters_and_callbacks_an_app_makes_in_a_loop_are_bounded():
    _, app, provider = fresh()
    meter = provider.get_meter("shop")
    for n in range(app_metrics.MAX_INSTRUMENTS + 5):
        meter.create_counter(f"shop.c{n}").add(1)
    assert len(app) == app_metrics.MAX_INSTRUMENTS
    assert app.get(f"shop.c{app_metrics.MAX_INSTRUMENTS}") is None
    app.reset()
    for n in range(app_metrics.MAX_CALLBACKS + 5):
        meter.create_observable_gauge("shop.level", [lambda o, n=n: [Observation(n)]])
    callback = app.get("shop.level").app_callbacks[0]
    meter.create_observable_gauge("shop.level", [callback])  # the same callback again
    assert len(app.get("shop.level").app_callbacks) == app_metrics.MAX_CALLBACKS
    for n in range(app_metrics.MAX_INSTRUMENTS + 5):
        provider.get_meter(f"lib{n}").create_counter("shop.shared")
    assert len(provider._meters) == app_metrics.MAX_INSTRUMENTS
    for n in range(app_metrics.MAX_WARNINGS + 5):
        meter.create_counter(f"bad name {n}!")
    assert len(app._warned) == app_metrics.MAX_WARNINGS


def test_a_name_ours_already_serves_is_left_off_the_page():
    instruments, app, provider = fresh()
    instruments["mystocks.trading.orders"].add(1, "buy", "market", "filled")
    # another OTel name that maps to our Prometheus family name
    provider.get_meter("shop").create_counter("mystocks_trading_orders").add(5)
    got = page(instruments, app)
    assert sum(got["mystocks_trading_orders_total"].values()) == 1


def test_install_keeps_a_provider_set_first_and_forwards_the_placeholder_otherwise():
    """In fresh interpreters: the API's globals are set once per process."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from mystocks_otel.config import Settings
        from mystocks_otel._internal import app_meters
        from mystocks_otel._internal.app_metrics import AppInstruments
        from mystocks_otel._internal.instruments import Instruments
        import sys
        app = AppInstruments(Instruments())
        early = metrics.get_meter("shop").create_counter("shop.early")
        if sys.argv[1] == "other":
            metrics.set_meter_provider(MeterProvider())
        if sys.argv[1] == "off":
            print(app_meters.install_global(app, None, Settings(global_meter_provider=False)))
            print(type(metrics.get_meter("x")).__name__)
            raise SystemExit
        print(app_meters.install_global(app, None, Settings()))
        print(app_meters.install_global(app, None, Settings()))
        early.add(2)
        late = metrics.get_meter("shop").create_counter("shop.late")
        late.add(3)
        found = app.get("shop.early"), app.get("shop.late")
        print([dict(r.snapshot()) if r else None for r in found])
        if sys.argv[1] == "ours":
            # a later SDK still may set the global; instruments made meanwhile move to it, as the
            # API's own placeholders would (FastAPI's "late global providers" test needs it)
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            print(type(metrics.get_meter_provider()).__name__)
            late.add(4)
            data = reader.get_metrics_data()
            print([(m.name, m.data.data_points[0].value) for rm in data.resource_metrics
                   for sm in rm.scope_metrics for m in sm.metrics])
            print(dict(app.get("shop.late").snapshot()))
    """)
    def run(which):
        proc = subprocess.run([sys.executable, "-c", script, which], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split("\n"), proc.stderr

    out, err = run("ours")
    assert out[:2] == ["set", "ours"]
    assert out[2] == "[{(): 2}, {(): 3}]"
    assert out[3] == "MeterProvider"
    assert out[4] == "[('shop.late', 4)]"  # moved to the provider set later
    assert out[5] == "{(): 3}"  # and no longer counted here
    assert "Overriding" not in err
    out, _ = run("off")  # MYSTOCKS_OTEL_GLOBAL_METER_PROVIDER=false: the placeholder untouched
    assert out[:2] == ["off", "_ProxyMeter"]
    out, err = run("other")
    assert out[:3] == ["other", "other", "[None, None]"]
    assert err.count("another MeterProvider") == 1


# -- across workers -------------------------------------------------------------------------------

def _worker(directory, number, ready, release):
    """A worker of the run: makes instruments the scraping worker never made itself."""
    instruments, app, provider = fresh()
    store = Store(directory, instruments, os.getppid(), "test", app=app)
    meter = provider.get_meter("shop")
    meter.create_counter("shop.sold", "{widget}", "Sold.").add(number, {"color": "red"})
    meter.create_up_down_counter("shop.stock").add(-number)
    meter.create_histogram("shop.took", "s", explicit_bucket_boundaries_advisory=[1.0]).record(0.5)
    meter.create_gauge("shop.temperature").set(number)
    meter.create_observable_up_down_counter("shop.open", [lambda o: [Observation(number)]])
    app.observe_all()
    ready.send(store.slot)
    release.recv()
    os._exit(0)


def test_app_instruments_merge_over_live_and_dead_workers(tmp_path):
    children = []
    for number in (2, 5):
        ready_recv, ready_send = FORK.Pipe(False)
        release_recv, release_send = FORK.Pipe(False)
        proc = FORK.Process(target=_worker, args=(str(tmp_path), number, ready_send, release_recv))
        proc.start()
        children.append((proc, release_send, ready_recv.recv()))
    instruments, app, _ = fresh()
    reader = Store(str(tmp_path), instruments, os.getpid(), "test", app=app)
    try:
        merged = reader.merged()
        got = page(instruments, app, merged, reader)
        assert got["shop_sold_total"] == {(("color", "red"),): 7}
        assert got["shop_stock"] == {(): -7}  # up-down counters add up
        assert got["shop_took_seconds_count"] == {(): 2}
        assert got["shop_open"] == {(): 7}  # observable up-down: live workers, added
        # gauges: one series per live worker, labelled with its slot
        assert got["shop_temperature"] == {(("worker", str(children[0][2])),): 2.0,
                                           (("worker", str(children[1][2])),): 5.0}
        # the first worker dies: its counts stay (compacted into dead.totals), its gauges go
        proc, release, slot = children[0]
        release.send(True)
        proc.join(10)
        reader.merged()  # meets the dead file, compacts it
        assert not [n for n in os.listdir(tmp_path) if n.startswith(f"{slot}-")]
        fresh_instruments, fresh_app, _ = fresh()  # a new worker: learns them from the files
        newcomer = Store(str(tmp_path), fresh_instruments, os.getpid(), "test", app=fresh_app)
        try:
            got = page(fresh_instruments, fresh_app, newcomer.merged(), newcomer)
        finally:
            newcomer.close()
        assert got["shop_sold_total"] == {(("color", "red"),): 7}
        assert got["shop_stock"] == {(): -7}
        assert got["shop_took_seconds_count"] == {(): 2}
        assert got["shop_open"] == {(): 5}
        assert [dict(k)["worker"] for k in got["shop_temperature"]] == [str(children[1][2])]
    finally:
        reader.close()
        for proc, release, _ in children:
            if proc.is_alive():
                release.send(True)
            proc.join(10)


# -- OTLP ----------------------------------------------------------------------------------------

def _reader(instruments, app) -> tuple[MeterProvider, InMemoryReader]:
    reader = InMemoryReader()
    reader.instruments, reader.app = instruments, app
    provider = MeterProvider(metric_readers=[reader])
    app.bind_all(lambda scope: provider.get_meter(scope[0], scope[1] or None, scope[2] or None))
    return provider, reader


def _metrics(data) -> dict:
    return {(sm.scope.name, m.name): m for rm in data.resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics}


def test_app_instruments_join_the_otlp_collection_under_their_scope():
    instruments, app, provider = fresh()
    sdk, reader = _reader(Instruments([]), app)
    try:
        meter = AppMeterProvider(app).get_meter("shop", "2.0")
        meter.create_counter("shop.sold", "{widget}", "Sold.").add(3, {"color": "red"})
        meter.create_histogram("shop.took", "s", "Took.",
                               explicit_bucket_boundaries_advisory=[1.0]).record(0.5)
        found = _metrics(reader.get_metrics_data())
        sold = found[("shop", "shop.sold")]
        assert (sold.unit, sold.description) == ("{widget}", "Sold.")
        assert [(dict(p.attributes), p.value) for p in sold.data.data_points] == [({"color": "red"}, 3)]
        took = found[("shop", "shop.took")]
        assert (took.unit, took.description) == ("s", "Took.")
        (point,) = took.data.data_points
        assert (point.count, list(point.explicit_bounds), list(point.bucket_counts)) == (1, [1.0], [1, 0])
    finally:
        sdk.shutdown()


def test_a_collection_where_the_sdk_has_nothing_still_carries_our_histograms(monkeypatch):
    """The known bug: the SDK called _receive_metrics only when it had data of its own."""
    # no set-up in this process: prometheus_client's default registry (process_* metrics once
    # it is imported, by any earlier test) is joined only under a provider's settings
    monkeypatch.setattr(state, "provider", lambda: None)
    instruments = Instruments([spec for spec in catalog.METRICS
                               if spec.name == "mystocks.db.query_duration"])
    sdk, reader = _reader(instruments, AppInstruments(instruments))
    try:
        assert reader.get_metrics_data() is None  # nobody has anything: nothing is sent
        instruments["mystocks.db.query_duration"].record(0.02, "SELECT", "quotes")
        found = _metrics(reader.get_metrics_data())
        (point,) = found[("mystocks_otel", "mystocks.db.query_duration")].data.data_points
        assert point.count == 1 and math.isclose(point.sum, 0.02)
    finally:
        sdk.shutdown()


def test_prometheus_name_rules():
    def name(instrument, unit, otel="a.b"):
        return AppSpec.make(otel, instrument, unit, "").prometheus_name

    assert name("counter", "{widget}") == "a_b_total"
    assert name("counter", "s") == "a_b_seconds_total"
    assert name("observable_counter", "By") == "a_b_bytes_total"
    assert name("histogram", "ms") == "a_b_milliseconds"
    assert name("gauge", "By/s") == "a_b_bytes_per_second"
    assert name("updowncounter", "1") == "a_b"
    assert name("counter", "", "requests_total") == "requests_total"


def test_otel_sdk_disabled_leaves_the_apps_meters_alone():
    import subprocess
    import sys

    script = ("from fastapi import FastAPI; from opentelemetry import metrics; import mystocks_otel;"
              "mystocks_otel.setup_telemetry(FastAPI());"
              "print(type(metrics.get_meter('shop')).__name__)")
    env = {**os.environ, "OTEL_SDK_DISABLED": "true"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_ProxyMeter"  # not ours: nothing set up


def test_the_private_otel_api_that_app_meters_reads_is_where_it_was():
    """app_meters reads three private parts of the OpenTelemetry metrics API (pinned at 1.45 in
    pyproject): the global provider slot, the placeholder provider and how the placeholder
    forwards. An upgrade that moves them must fail here by name, not drop the app's
    measurements quietly (each measurement swallows its errors, by design)."""
    from opentelemetry.metrics import _internal as api_internal

    assert hasattr(api_internal, "_METER_PROVIDER"), "opentelemetry.metrics._internal._METER_PROVIDER moved"
    placeholder = getattr(api_internal, "_PROXY_METER_PROVIDER", None)
    assert isinstance(placeholder, api_internal._ProxyMeterProvider), "_PROXY_METER_PROVIDER moved"
    assert callable(getattr(placeholder, "on_set_meter_provider", None))
    assert hasattr(placeholder, "_real_meter_provider")
    # and the placeholder still forwards what it made earlier, as app_meters relies on
    probe = api_internal._ProxyMeterProvider()
    counter = probe.get_meter("probe").create_counter("probe.count")
    instruments, app, provider = fresh()
    probe.on_set_meter_provider(provider)
    counter.add(2)
    assert page(instruments, app)["probe_count_total"] == {(): 2.0}
