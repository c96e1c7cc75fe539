import re

from mystocks_otel import catalog
from mystocks_otel.catalog import Kind

CUSTOM = catalog.custom_metrics()


def test_at_least_forty_custom_metrics():
    assert len(CUSTOM) >= 40


def test_names_are_unique():
    for attr in ("name", "prometheus_name"):
        names = [getattr(spec, attr) for spec in catalog.METRICS]
        assert len(names) == len(set(names)), attr


def test_custom_names_follow_mystocks_domain_name_unit():
    for spec in CUSTOM:
        assert spec.name.startswith(f"mystocks.{spec.domain}."), spec.name
        assert re.fullmatch(r"mystocks_[a-z]+(_[a-z0-9]+)+", spec.prometheus_name), spec.name
        assert spec.prometheus_name.startswith(f"mystocks_{spec.domain}_")
        if spec.kind is Kind.COUNTER:
            assert spec.prometheus_name.endswith("_total")
        else:
            assert not spec.prometheus_name.endswith("_total")
        if spec.unit == "s":
            assert spec.prometheus_name.endswith("_seconds")
        if spec.unit == "By":
            assert spec.prometheus_name.endswith("_bytes")


def test_every_spec_is_complete():
    for spec in catalog.METRICS:
        assert spec.priority in catalog.PRIORITIES
        assert spec.description.endswith(".")
        assert spec.unit
        if spec.kind is Kind.HISTOGRAM:
            assert spec.buckets and list(spec.buckets) == sorted(spec.buckets), spec.name

    # The SDK's default buckets suit milliseconds: every latency in seconds needs its own.
    for name in ("http.server.request.duration", "mystocks.db.query_duration",
                 "mystocks.redis.command_duration", "mystocks.market_data.processing_duration",
                 "mystocks.trading.order_latency"):
        assert catalog.get(name).buckets[0] <= 0.005, name


def test_required_coverage_from_the_issue():
    required = {
        "market_data": {"points_processed", "processing_duration"},
        "user": {"active_sessions", "portfolio_updates", "watchlist_operations"},
        "trading": {"orders", "order_latency"},
        "data_quality": {"completeness_ratio", "freshness", "anomalies"},
        "websocket": {"active_connections", "messages", "connection_errors", "connection_duration"},
        "cache": {"hits", "misses", "hit_ratio", "memory_usage", "evictions"},
        "db": {"connections_active", "connections_idle", "connections_open", "query_duration",
               "slow_queries", "query_errors"},
        "system": {"cpu_utilization", "memory_usage", "memory_utilization", "disk_utilization",
                   "uptime"},
        "alert": {"fired", "active", "resolution_duration"},
        "health": {"component_status", "dependency_availability"},
    }
    for domain, names in required.items():
        for name in names:
            assert f"mystocks.{domain}.{name}" in catalog.BY_NAME, f"{domain}.{name}"


def test_semconv_metrics_are_listed_under_otel_names():
    semconv = {spec.name for spec in catalog.METRICS if spec.semconv}
    assert {"http.server.request.duration", "http.server.active_requests",
            "db.client.connection.count"} <= semconv


def test_personal_data_never_allowed_as_a_label():
    forbidden = {"user_id", "user", "email", "symbol", "path", "url", "url.path", "url.full",
                 "http.target", "session_id", "order_id", "ip", "client.address"}
    for spec in catalog.METRICS:
        assert not forbidden & set(spec.attribute_keys), spec.name


def test_expected_prometheus_names():
    assert catalog.get("http.server.request.duration").prometheus_name == (
        "http_server_request_duration_seconds")
    assert catalog.get("mystocks.trading.orders").prometheus_name == "mystocks_trading_orders_total"
    assert catalog.get("mystocks.cache.memory_usage").prometheus_name == (
        "mystocks_cache_memory_usage_bytes")
    assert catalog.get("mystocks.system.cpu_utilization").prometheus_name == (
        "mystocks_system_cpu_utilization_percent")
    assert catalog.get("mystocks.cache.hit_ratio").prometheus_name == "mystocks_cache_hit_ratio"
