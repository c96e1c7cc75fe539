"""The process-wide parts of the runtime: instrumentors built with their settings, one system sampler,
and a poller that survives ``fork()``. Each scenario runs in a fresh interpreter."""

from core_helpers import run_scenario


def test_hooks_are_built_with_the_settings_of_the_set_up_that_installs_them():
    result = run_scenario("""
        from mystocks_otel._internal import runtime
        from mystocks_otel import record_db_query
        from mystocks_otel._internal.state import counter
        slow = counter("mystocks.db.slow_queries")
        before = runtime.instrumented("sqlalchemy")
        record_db_query("SELECT", 0.6)   # before set-up: the default threshold, 0.5 s
        record_db_query("SELECT", 0.4)
        setup_telemetry(make_app(), slow_query_seconds=0.05, db_tables=frozenset({"quotes"}),
                        system_metrics=False)
        first = runtime.instrumented("sqlalchemy").hooks
        record_db_query("SELECT", 0.06, table="quotes")
        runtime.stop()
        gone = runtime.instrumented("sqlalchemy")
        setup_telemetry(make_app(), slow_query_seconds=2.0, system_metrics=False)
        second = runtime.instrumented("sqlalchemy").hooks
        record_db_query("SELECT", 1.0, table="quotes")
        done(before=before is None, gone=gone is None, fresh=second is not first,
             first=[first.slow_query_seconds, sorted(first.tables)],
             second=[second.slow_query_seconds, sorted(second.tables)],
             slow={"other": slow.value("SELECT", "other"), "quotes": slow.value("SELECT", "quotes")})
    """)
    assert result["before"] and result["gone"] and result["fresh"]
    assert result["first"] == [0.05, ["quotes"]]
    assert result["second"] == [2.0, []]
    # 0.6 s counted before set-up (0.5 s default), 0.06 s under the 0.05 s threshold, 1.0 s not
    # under the 2.0 s threshold of the second set-up.
    assert result["slow"] == {"other": 1, "quotes": 1}


def test_one_system_sampler_serves_the_poller_and_update_system_metrics():
    result = run_scenario("""
        from mystocks_otel._internal import runtime
        from mystocks_otel import update_system_metrics
        setup_telemetry(make_app(), probe_interval_seconds=3600)
        rt = runtime.current()
        samplers = {id(task.__self__) for task in rt.poller.tasks
                    if type(getattr(task, "__self__", None)).__name__ == "SystemSampler"}
        values = update_system_metrics()
        done(samplers=len(samplers), shared=samplers == {id(runtime.SYSTEM)},
             pid=runtime.SYSTEM._process.pid == os.getpid(), threads=values["threads"])
    """)
    assert result["samplers"] == 1 and result["shared"] and result["pid"]
    assert result["threads"] >= 2  # the main thread and the poller


def test_system_metrics_off_leaves_the_sampler_out_of_the_poller():
    result = run_scenario("""
        from mystocks_otel._internal import runtime
        setup_telemetry(make_app(), system_metrics=False, probe_interval_seconds=3600)
        names = [getattr(task, "__name__", "") for task in runtime.current().poller.tasks]
        done(names=names)
    """)
    assert result["names"] == ["update_pool_metrics", "update_cache_metrics", "probe_health",
                               "observe_app_instruments"]


def test_a_forked_child_runs_its_own_poller_and_samples_itself():
    # The poller runs back to back, so every fork lands while it works: a lock it held at
    # the fork would be held forever in the child, and the child would hang here.
    result = run_scenario("""
        from mystocks_otel._internal import runtime
        setup_telemetry(make_app(), probe_interval_seconds=0.001)
        parent_thread = runtime.current().poller._thread
        children = []
        for _ in range(5):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:   # the child: the parent's poller thread did not come along
                runtime.HEALTH.last["components"].clear()
                deadline = time.monotonic() + 20
                while "exporter" not in runtime.HEALTH.last["components"] and time.monotonic() < deadline:
                    time.sleep(0.01)
                poller = runtime.current().poller
                runtime.SYSTEM.sample()
                os.write(write, json.dumps({
                    "probed": "exporter" in runtime.HEALTH.last["components"],
                    "new_thread": poller._thread is not parent_thread and poller._thread.is_alive(),
                    "sampler_pid": runtime.SYSTEM._process.pid == os.getpid(),
                }).encode())
                os._exit(0)
            os.waitpid(pid, 0)
            children.append(json.loads(os.read(read, 65536)))
        done(children=children, parent_alive=parent_thread.is_alive(),
             parent_sampler=runtime.SYSTEM._process.pid == os.getpid())
    """)
    assert result["children"] == [{"probed": True, "new_thread": True, "sampler_pid": True}] * 5
    assert result["parent_alive"] and result["parent_sampler"]


def test_pool_status_before_set_up_reads_the_engines_given():
    result = run_scenario("""
        import sqlalchemy as sa
        from mystocks_otel._internal import runtime
        from mystocks_otel import update_database_metrics
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=1)
        held = engine.connect()
        report = update_database_metrics([engine])
        done(report=report, nothing=update_database_metrics(), hooks=runtime.instrumented("sqlalchemy") is None)
    """)
    assert result["report"] == {"sqlite/default": {"active": 1, "idle": 0, "open": 1, "max": 3}}
    assert result["nothing"] == {} and result["hooks"]


def test_a_forked_child_gets_its_own_collector_connection():
    # The SDK's exporter internals are reached by name: this fails if an SDK upgrade moves them.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    from mystocks_otel._internal import export_health, state
    from mystocks_otel._internal.prefork import new_session

    exporter = export_health.watch(OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics",
                                                      headers={"x-team": "quant"}), "otlp",
                                   export_health.ExportStatuses(), state.counter(export_health.EXPORT_FAILURES))
    transport = exporter.inner._client._transport
    inherited = transport._session
    inherited.verify = False
    assert new_session(exporter)
    assert transport._session is not inherited
    assert transport._session.headers == inherited.headers
    assert transport._session.verify is False
    assert new_session(object()) is False  # another layout: keep what there is, never raise


def test_a_forked_child_starts_its_counts_at_zero_and_the_parent_keeps_its_own():
    result = run_scenario("""
        from mystocks_otel._internal import runtime
        from mystocks_otel import record_order, record_db_query, set_symbols_tracked
        from mystocks_otel._internal.state import counter, gauge, histogram
        setup_telemetry(make_app(), system_metrics=False)
        record_order("buy", "market", "filled"); record_db_query("SELECT", 0.01)
        set_symbols_tracked("feed", 7)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            record_order("buy", "market", "filled")
            os.write(write, json.dumps({
                "orders": counter("mystocks.trading.orders").value("buy", "market", "filled"),
                "queries": len(histogram("mystocks.db.query_duration").snapshot()),
                "symbols": gauge("mystocks.market_data.symbols_tracked").value("feed"),
            }).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        done(child=json.loads(os.read(read, 65536)),
             parent=counter("mystocks.trading.orders").value("buy", "market", "filled"))
    """)
    assert result["child"] == {"orders": 1, "queries": 0, "symbols": 7}
    assert result["parent"] == 1


def test_a_fork_during_an_export_leaves_the_child_able_to_export():
    # The parent's export thread is inside export() (holding the reader's export lock) when
    # the fork happens. The stock reader's child then waits on that lock forever; ours waits
    # for the export to finish before forking.
    result = run_scenario("""
        import threading
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (MetricExporter, MetricExportResult,
                                                      PeriodicExportingMetricReader)
        from mystocks_otel._internal.sdk_bridge import JoinHistograms, PeriodicReader

        class Stock(JoinHistograms, PeriodicExportingMetricReader):
            pass

        parent = os.getpid()

        class Slow(MetricExporter):
            def __init__(self, seconds):
                super().__init__()
                self.seconds, self.started, self.exports = seconds, threading.Event(), 0
            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                self.started.set()
                time.sleep(self.seconds if os.getpid() == parent else 0.01)
                self.exports += 1
                return MetricExportResult.SUCCESS
            def force_flush(self, timeout_millis=10_000):
                return True
            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        def child_exports(reader_class, seconds=1.0):
            exporter = Slow(seconds)
            provider = MeterProvider(metric_readers=[reader_class(exporter, export_interval_millis=20)])
            provider.get_meter("t").create_counter("c").add(1)
            exporter.started.wait(10)
            read, write = os.pipe()
            pid = os.fork()          # lands inside the parent's export
            if pid == 0:
                before, deadline = exporter.exports, time.monotonic() + 5
                while exporter.exports == before and time.monotonic() < deadline:
                    time.sleep(0.02)
                os.write(write, b"1" if exporter.exports > before else b"0")
                os._exit(0)
            os.waitpid(pid, 0)
            exported = os.read(read, 1) == b"1"
            provider.shutdown(timeout_millis=1000)
            return exported

        # a Collector slower than the fork's bounded wait (2 s): the fork goes ahead, and the
        # child, with the reader's locks and session made anew, still exports
        done(ours=child_exports(PeriodicReader), stock=child_exports(Stock),
             hung=child_exports(PeriodicReader, seconds=4.0))
    """)
    assert result == {"ours": True, "stock": False, "hung": True}
