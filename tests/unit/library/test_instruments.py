import math
import threading

from mystocks_otel import catalog
from mystocks_otel._internal.instruments import DROPPED, OVERFLOW_KEY, SANITIZED, Instruments


def fresh(limit=2000):
    return Instruments(catalog.METRICS, cardinality_limit=limit)


def totals(recorder):
    return {recorder.attributes_of(k).get("side", k): v for k, v in recorder._totals.items()}


def test_counter_adds_per_attribute_set():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]
    orders.add(1, "buy", "limit", "filled")
    orders.add(2, "buy", "limit", "filled")
    orders.add(1, "sell", "market", "rejected")
    assert orders.value("buy", "limit", "filled") == 3
    assert orders.value("sell", "market", "rejected") == 1
    observed = {tuple(sorted(o.attributes.items())): o.value for o in orders.observe()}
    assert observed[(("side", "buy"), ("status", "filled"), ("type", "limit"))] == 3


def test_value_outside_bounded_set_becomes_other_and_is_counted():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]
    orders.add(1, "hold", "limit", "filled")
    orders.add(1, "hold", "limit", "filled")
    assert orders.value("other", "limit", "filled") == 2  # measurement kept
    assert inst[SANITIZED].value("mystocks.trading.orders", "value_not_allowed") == 2


def test_unknown_attribute_key_is_stripped_and_counted():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]
    values = orders.values_from_attributes(
        {"side": "buy", "type": "limit", "status": "filled", "user_id": "42", "email": "a@b.c"})
    orders.add(1, *values)
    assert orders.value("buy", "limit", "filled") == 1
    assert inst[SANITIZED].value("mystocks.trading.orders", "unknown_key") == 2
    for observation in orders.observe():
        assert set(observation.attributes) == {"side", "type", "status"}


def test_nan_and_negative_increments_are_dropped_and_counted():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]
    orders.add(float("nan"), "buy", "limit", "filled")
    orders.add(-1, "buy", "limit", "filled")
    orders.add(1, "buy", "limit", "filled")
    assert orders.value("buy", "limit", "filled") == 1
    assert inst[DROPPED].value("mystocks.trading.orders", "nan") == 1
    assert inst[DROPPED].value("mystocks.trading.orders", "negative") == 1


def test_up_down_counter_accepts_negative_but_not_nan():
    inst = fresh()
    active = inst["mystocks.websocket.active_connections"]
    active.add(1, "/ws")
    active.add(-1, "/ws")
    active.add(math.nan, "/ws")
    assert active.value("/ws") == 0
    assert inst[DROPPED].value("mystocks.websocket.active_connections", "nan") == 1


def test_recorders_never_raise_on_garbage():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]
    orders.add("many", "buy", "limit", "filled")
    orders.add(1, "buy")  # wrong arity
    inst["mystocks.data_quality.freshness"].set(None, "quotes")
    inst["mystocks.db.query_duration"].record(object(), "SELECT", "t")
    assert inst[DROPPED].value("mystocks.trading.orders", "error") == 2
    assert inst[DROPPED].value("mystocks.data_quality.freshness", "error") == 1


def test_cardinality_is_bounded_and_overflow_keeps_totals():
    inst = fresh(limit=10)
    latency = inst["mystocks.websocket.connections_opened"]  # free-form namespace label
    for i in range(1000):
        latency.add(1, f"/ws/{i}")
    assert latency.series_count == 10
    assert len(latency._totals) == 11  # ten series plus the overflow series
    assert latency._totals[OVERFLOW_KEY] == 990
    assert sum(latency._totals.values()) == 1000
    assert latency.attributes_of(OVERFLOW_KEY) == {catalog.OVERFLOW_ATTRIBUTE: True}
    assert inst[SANITIZED].value("mystocks.websocket.connections_opened", "overflow") == 990
    assert len(latency._clean) <= 20  # the fast-path cache is bounded too


def test_concurrent_adds_are_not_lost():
    inst = fresh()
    orders = inst["mystocks.trading.orders"]

    def work():
        for _ in range(20_000):
            orders.add(1, "buy", "limit", "filled")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert orders.value("buy", "limit", "filled") == 160_000


def test_gauge_keeps_last_value():
    inst = fresh()
    freshness = inst["mystocks.data_quality.freshness"]
    freshness.set(3.0, "quotes")
    freshness.set(7.5, "quotes")
    assert freshness.value("quotes") == 7.5
    assert [o.value for o in freshness.observe()] == [7.5]
