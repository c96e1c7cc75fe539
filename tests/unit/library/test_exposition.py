"""Our own /metrics rendering: the same series as the stock OTel Prometheus reader, text and
OpenMetrics, content negotiation; and the pre-aggregated histograms reaching SDK readers."""

import threading

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from mystocks_otel import catalog
from mystocks_otel._internal import provider
from mystocks_otel.catalog import Kind
from mystocks_otel._internal.exposition import families, render_families, wants_openmetrics
from mystocks_otel._internal.instruments import OVERFLOW_KEY, Instruments
from mystocks_otel._internal.sdk_bridge import InMemoryReader

HOSTILE = 'a"b\\c\nd}{,=é'
RESOURCE = Resource.create({"service.name": "svc", "deployment.environment": "t", "1odd.key": 'x"y'})


def fresh(limit=2000):
    return Instruments(catalog.METRICS, cardinality_limit=limit)


def values_for(spec, variant=0):
    return [sorted(lbl.values)[variant % len(lbl.values)] if lbl.values else
            (HOSTILE if variant == 0 else f"v{variant}") for lbl in spec.labels]


def record_everything(inst, sdk_histograms=None):
    """Record the same measurements into our recorders (and SDK histograms, if given)."""
    for spec in catalog.METRICS:
        recorder = inst[spec.name]
        for variant, amount in enumerate((1, 0.004, 7.5, 12.0)):
            values = values_for(spec, variant)
            if spec.kind is Kind.HISTOGRAM:
                bound = spec.buckets[variant % len(spec.buckets)]
                for value in (amount, bound, bound * 1.0001, 0.0):
                    recorder.record(value, *values)
                    if sdk_histograms is not None:
                        sdk_histograms[spec.name].record(value, recorder.attributes_of(recorder._key(tuple(values))))
            elif spec.kind is Kind.GAUGE:
                recorder.set(amount, *values)
            else:
                recorder.add(amount, *values)
    inst["mystocks.trading.orders"].add(3, 200, True, 1.5)  # non-string values: JSON, as the exporter does


def samples(families_):
    out = {}
    for family in families_:
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if v != ""))
            out[(sample.name, labels)] = sample.value
    return out


def stock_page(inst) -> str:
    """What the OTel Prometheus reader renders for the same data (scope labels off)."""
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    sdk = MeterProvider(metric_readers=[reader], resource=RESOURCE, views=provider.views())
    meter = sdk.get_meter("stock")
    histograms = {}
    for recorder in inst:
        spec = recorder.spec
        if spec.kind is Kind.HISTOGRAM:
            histograms[spec.name] = meter.create_histogram(
                spec.name, spec.unit, spec.description,
                explicit_bucket_boundaries_advisory=list(spec.buckets))
        else:
            recorder.bind(meter)
    record_everything(inst, histograms)
    try:
        return generate_latest(registry).decode()
    finally:
        sdk.shutdown()


def test_text_page_has_exactly_the_stock_readers_series_names_labels_and_le():
    ours = fresh()
    stock = stock_page(fresh_bound := fresh())
    record_everything(ours)
    mine = render_families(families(ours), RESOURCE.attributes)
    expected, got = samples(parse_text(stock)), samples(parse_text(mine))
    assert got == expected
    assert len(got) > 500
    # le values are the exporter's own spelling, and the resource is target_info
    assert 'le="0.005"' in mine and 'le="1.0"' in mine and 'le="+Inf"' in mine
    assert "# TYPE target_info gauge" in mine and 'x1odd_key' not in mine and '_odd_key="x\\"y"' in mine
    del fresh_bound


def test_openmetrics_page_parses_and_carries_the_same_samples():
    inst = fresh()
    record_everything(inst)
    text = samples(parse_text(render_families(families(inst), RESOURCE.attributes)))
    page = render_families(families(inst), RESOURCE.attributes, openmetrics=True)
    assert page.endswith("# EOF\n")
    assert "# TYPE mystocks_trading_orders counter" in page
    assert "# TYPE target info" in page
    parsed = samples(parse_openmetrics(page))
    assert {k: v for k, v in parsed.items() if k[0] != "target_info"} == {
        k: v for k, v in text.items() if k[0] != "target_info"}


def test_exemplars_only_in_openmetrics_on_the_bucket_they_fell_in():
    inst = fresh()
    duration = inst["http.server.request.duration"]
    ids = iter([(0xABC, 0x12), (0xDEF, 0x34)])
    duration.exemplar_source = lambda: next(ids, None)
    duration.record(0.02, "GET", "/q", 200)   # bucket le=0.025
    duration.record(0.03, "GET", "/q", 200)   # bucket le=0.05
    duration.record(0.021, "GET", "/q", 200)  # no sampled span: the 0.025 bucket keeps its exemplar
    page = render_families(families(inst), {}, openmetrics=True)
    (family,) = [f for f in parse_openmetrics(page) if f.name == "http_server_request_duration_seconds"]
    exemplars = {s.labels["le"]: s.exemplar for s in family.samples if s.exemplar is not None}
    assert set(exemplars) == {"0.025", "0.05"}
    assert exemplars["0.025"].labels == {"trace_id": f"{0xABC:032x}", "span_id": f"{0x12:016x}"}
    assert exemplars["0.025"].value == 0.02 and exemplars["0.05"].value == 0.03
    assert " # {" not in render_families(families(inst), {})


@pytest.mark.parametrize("accept, expected", [
    (None, False), ("", False), ("*/*", False), ("text/plain", False),
    ("application/openmetrics-text", True),
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),  # Prometheus 2.42
    ("text/plain;q=1,application/openmetrics-text;q=0.5", False),
    ("application/openmetrics-text;version=9.9.9", False),
    ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;q=abc", False),
])
def test_content_negotiation(accept, expected):
    assert wants_openmetrics(accept) is expected


def test_histogram_buckets_follow_le_and_keep_sum_min_max():
    inst = fresh()
    latency = inst["mystocks.db.query_duration"]
    for value in (0.001, 0.0010001, 0.0, 99.0):
        latency.record(value, "SELECT", "t")
    ((key, series),) = latency.snapshot()
    bounds = latency.bounds
    assert series[bounds.index(0.001)] == 2  # 0.0 and exactly 0.001 (le is inclusive)
    assert series[bounds.index(0.0025)] == 1
    assert series[len(bounds)] == 1  # above every bound
    assert series[-3] == pytest.approx(99.0020001) and series[-2] == 0.0 and series[-1] == 99.0
    assert latency.count("SELECT", "t") == 4


def test_histogram_drops_bad_values_and_bounds_series():
    inst = fresh(limit=5)
    latency = inst["mystocks.db.query_duration"]
    for value in (float("nan"), -1.0, float("inf")):
        latency.record(value, "SELECT", "t")
    for i in range(50):
        latency.record(0.01, "SELECT", f"t{i}")
    assert latency.series_count == 5
    overflow = dict(latency.snapshot())[OVERFLOW_KEY]
    assert sum(overflow[:latency.width]) == 46  # "t" (admitted by the dropped values) and t0-t3 fill it
    dropped = inst["mystocks.telemetry.dropped_measurements"]
    assert [dropped.value("mystocks.db.query_duration", r) for r in ("nan", "negative", "infinite")] == [1, 1, 1]


def test_concurrent_histogram_records_are_not_lost():
    inst = fresh()
    latency = inst["mystocks.redis.command_duration"]

    def work():
        for i in range(10_000):
            latency.record(0.0001 * (i % 50), "GET")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert latency.count("GET") == 60_000


def _reader_points(reader, name):
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric
    return None


def _bridge(inst, **reader_options):
    reader = InMemoryReader(**reader_options)
    reader.instruments = inst
    sdk = MeterProvider(metric_readers=[reader], resource=RESOURCE)
    inst.bind(sdk.get_meter("mystocks_otel"))
    return reader, sdk


def test_histograms_join_sdk_readers_cumulatively_with_exemplars():
    inst = fresh()
    reader, sdk = _bridge(inst)
    latency = inst["mystocks.trading.order_latency"]
    latency.exemplar_source = lambda: (7, 9)
    for value in (0.004, 0.3, 20.0):
        latency.record(value, "buy", "limit")
    inst["mystocks.trading.orders"].add(1, "buy", "limit", "filled")
    metric = _reader_points(reader, "mystocks.trading.order_latency")
    (point,) = metric.data.data_points
    assert metric.unit == "s" and metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert dict(point.attributes) == {"side": "buy", "type": "limit"}
    assert point.count == 3 and point.sum == pytest.approx(20.304)
    assert (point.min, point.max) == (0.004, 20.0)
    assert list(point.explicit_bounds) == list(catalog.get("mystocks.trading.order_latency").buckets)
    assert sum(point.bucket_counts) == 3 and point.bucket_counts[-1] == 1
    assert point.start_time_unix_nano == latency.start_time_ns < point.time_unix_nano
    assert {(e.trace_id, e.span_id) for e in point.exemplars} == {(7, 9)} and len(point.exemplars) == 3
    latency.record(0.3, "buy", "limit")
    (again,) = _reader_points(reader, "mystocks.trading.order_latency").data.data_points
    assert again.count == 4 and again.start_time_unix_nano == point.start_time_unix_nano
    # the SDK's own data is still there
    assert _reader_points(reader, "mystocks.trading.orders") is not None
    sdk.shutdown()


def test_histograms_follow_a_delta_reader():
    inst = fresh()
    reader, sdk = _bridge(inst, preferred_temporality={SDKHistogram: AggregationTemporality.DELTA})
    latency = inst["mystocks.trading.order_latency"]
    inst["mystocks.trading.orders"].add(1, "buy", "limit", "filled")
    latency.record(0.3, "buy", "limit")
    latency.record(0.3, "buy", "limit")
    (first,) = _reader_points(reader, "mystocks.trading.order_latency").data.data_points
    latency.record(2.0, "buy", "limit")
    (second,) = _reader_points(reader, "mystocks.trading.order_latency").data.data_points
    assert (first.count, second.count) == (2, 1)
    assert second.sum == pytest.approx(2.0)
    assert second.start_time_unix_nano == first.time_unix_nano
    assert _reader_points(reader, "mystocks.trading.order_latency") is None or not _reader_points(
        reader, "mystocks.trading.order_latency").data.data_points
    sdk.shutdown()
