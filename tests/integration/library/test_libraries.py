"""SQLAlchemy and Redis hooks against real servers (fresh interpreter per scenario)."""

import subprocess
import sys
from pathlib import Path

import pytest
from support import require
from core_helpers import run_scenario, series

SQLALCHEMY_20 = Path.home() / ".cache" / "mystocks-otel" / "sqlalchemy-2.0"

SQL_SCENARIO = """
    import sqlalchemy as sa
    from sqlalchemy import create_engine as _create_engine
    url = os.environ["TEST_DB_URL"]
    early = sa.create_engine(url)              # made before set-up, passed in
    def make_engine(u):                        # a wrapper bound before set-up
        return _create_engine(u, pool_size=3, max_overflow=2)
    app = make_app(); setup_telemetry(app, engines=[early], slow_query_seconds=0.05,
                                      db_tables=frozenset({"mystocks_probe"}))
    late = make_engine(url)                    # made after set-up
    if url.startswith("sqlite"):
        @sa.event.listens_for(early, "connect")
        def add_sleep(dbapi_connection, record):
            dbapi_connection.create_function("pg_sleep", 1, time.sleep)
    sleep = "SELECT pg_sleep(0.1)"
    with late.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS mystocks_probe (id integer)")
        conn.exec_driver_sql("INSERT INTO mystocks_probe VALUES (1)")
        conn.exec_driver_sql("SELECT id FROM mystocks_probe")
        conn.exec_driver_sql("SELECT 2")
    with early.connect() as conn:
        conn.exec_driver_sql(sleep)
    held = late.connect()
    held.exec_driver_sql("SELECT 1")
    try:
        with late.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table_here")
    except Exception:
        pass
    with late.begin() as conn:
        conn.exec_driver_sql("DROP TABLE mystocks_probe")
    mystocks_otel.update_database_metrics()
    done(body=TestClient(app).get("/metrics").text, backend=late.url.get_backend_name())
"""


def _check_sql(result):
    body = result["body"]
    queries = {(l["operation"], l["table"]): v for l, v in series(body, "mystocks_db_query_duration_seconds_count")}
    assert queries[("INSERT", "mystocks_probe")] == 1
    assert queries[("SELECT", "mystocks_probe")] == 1  # allow-listed table
    assert ("CREATE", "mystocks_probe") in queries
    assert all(table in ("mystocks_probe", "other") for _, table in queries)
    errors = series(body, "mystocks_db_query_errors_total")
    assert [(l["operation"], v) for l, v in errors] == [("SELECT", 1)]
    assert errors[0][0]["error_type"] in ("OperationalError", "ProgrammingError")
    slow = {(l["operation"], l["table"]): v for l, v in series(body, "mystocks_db_slow_queries_total")}
    assert slow[("SELECT", "other")] == 1  # pg_sleep(0.1) against a 0.05 s threshold
    active = dict((l["pool"], v) for l, v in series(body, "mystocks_db_connections_active"))
    maximum = dict((l["pool"], v) for l, v in series(body, "mystocks_db_connections_max"))
    (pool,) = maximum  # both engines use one database: one pool label, counts summed
    assert pool.startswith(result["backend"] + "/")
    assert maximum[pool] == (3 + 2) + (5 + 10)  # the wrapper's pool + the default pool
    assert active[pool] == 1  # the held connection
    used = {l["db_client_connection_state"]: v for l, v in series(body, "db_client_connection_count")
            if l["db_client_connection_pool_name"] == pool}
    assert used["used"] == 1 and used["idle"] >= 0


def test_sqlalchemy_on_sqlite(tmp_path):
    result = run_scenario(SQL_SCENARIO, env={"TEST_DB_URL": f"sqlite:///{tmp_path}/t.db"})
    _check_sql(result)


def test_sqlalchemy_on_postgresql(postgres_url):
    result = run_scenario(SQL_SCENARIO, env={"TEST_DB_URL": postgres_url})
    _check_sql(result)


def test_redis_commands_errors_and_cache_metrics(throwaway_redis):
    result = run_scenario("""
        import redis
        early = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], socket_timeout=1)
        app = make_app(); setup_telemetry(app)
        late = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], socket_timeout=1)
        early.set("k", "v"); late.get("k"); late.get("missing")
        with late.pipeline() as pipe:
            pipe.incr("n"); pipe.incr("n"); pipe.execute()
        try:
            late.execute_command("NOSUCHCOMMAND")
        except redis.ResponseError:
            pass
        info = mystocks_otel.update_cache_metrics(late)
        done(body=TestClient(app).get("/metrics").text, info=info)
    """, env={"TEST_REDIS_URL": throwaway_redis["url"]})
    body = result["body"]
    commands = {l["command"]: v for l, v in series(body, "mystocks_redis_command_duration_seconds_count")}
    assert commands["SET"] == 1 and commands["GET"] == 2 and commands["PIPELINE"] == 1
    assert commands["other"] == 1  # NOSUCHCOMMAND: unknown names never become labels
    errors = series(body, "mystocks_redis_command_errors_total")
    assert errors == [({"command": "other", "error_type": "ResponseError"}, 1)]
    assert series(body, "mystocks_cache_memory_usage_bytes")[0][1] > 0
    assert series(body, "mystocks_cache_keys") == [({"cache": "redis"}, 2)]


def test_redis_down_is_counted_and_reported_unhealthy(throwaway_redis):
    result = run_scenario("""
        import redis, signal
        app = make_app(); setup_telemetry(app, probe_interval_seconds=0.2)
        client = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], socket_timeout=1,
                                      socket_connect_timeout=1)
        client.ping()
        os.kill(int(os.environ["TEST_REDIS_PID"]), signal.SIGKILL)
        time.sleep(0.3)
        try:
            client.get("k")
        except redis.ConnectionError:
            pass
        mystocks_otel.update_health_metrics()
        done(body=TestClient(app).get("/metrics").text, health=TestClient(app).get("/metrics/health").json())
    """, env={"TEST_REDIS_URL": throwaway_redis["url"], "TEST_REDIS_PID": str(throwaway_redis["process"].pid)})
    body = result["body"]
    errors = {l["error_type"] for l, _ in series(body, "mystocks_redis_command_errors_total")}
    assert "ConnectionError" in errors
    assert series(body, "mystocks_health_dependency_availability") == [({"dependency": "redis"}, 0.0)]
    assert result["health"]["components"]["cache"] is False
    assert result["health"]["status"] == "degraded"


# -- SQL spans: from our own engine hooks, on SQLAlchemy 2.0 and 2.1 alike ------------------

@pytest.fixture(scope="session")
def sqlalchemy_20() -> str:
    """SQLAlchemy 2.0 in a cached folder that shadows the venv's 2.1 on PYTHONPATH."""
    if not (SQLALCHEMY_20 / "sqlalchemy").is_dir():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
             str(SQLALCHEMY_20), "sqlalchemy>=2.0,<2.1"], capture_output=True, text=True, timeout=300)
        require(proc.returncode == 0, f"cannot install SQLAlchemy 2.0: {proc.stderr[-500:]}")
    return str(SQLALCHEMY_20)


SPAN_SCENARIO = """
    import sqlalchemy as sa
    from mystocks_otel.testing import capture_metrics
    with capture_metrics() as capture:
        app = make_app()
        setup_telemetry(app, tracer_provider=capture.tracer_provider, system_metrics=False)
        engine = sa.create_engine(os.environ["TEST_DB_URL"])
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT :x"), {"x": "secret-parameter"})
            try:
                conn.exec_driver_sql("SELECT * FROM no_such_table_here")
            except sa.exc.DBAPIError:
                pass
        spans = [{"name": s.name, "kind": s.kind.name, "attributes": dict(s.attributes),
                  "status": s.status.status_code.name} for s in capture.spans()]
        queries = capture.count("mystocks.db.query_duration", {"operation": "SELECT"})
    done(version=sa.__version__, spans=spans, queries=queries)
"""


def _check_spans(result, system, server, port=None):
    ok, failed = result["spans"]
    for span in (ok, failed):
        assert span["kind"] == "CLIENT"
        attributes = span["attributes"]
        assert attributes["db.system.name"] == system
        assert attributes["db.operation.name"] == "SELECT"
        if server:
            assert attributes["server.address"] == "127.0.0.1"
            assert attributes["server.port"] == port
            assert attributes["db.namespace"] == "test"
            assert span["name"] == "SELECT test"
        else:
            assert "server.address" not in attributes and span["name"] == "SELECT"
    assert ok["status"] == "UNSET"
    assert ok["attributes"]["db.query.text"].startswith("SELECT ")
    assert "secret-parameter" not in str(result["spans"])  # statements only, never parameters
    assert failed["status"] == "ERROR"
    assert failed["attributes"]["db.query.text"] == "SELECT * FROM no_such_table_here"
    assert failed["attributes"]["error.type"]
    assert result["queries"] == 1  # the metrics are still recorded once (the failure has no duration)


@pytest.mark.parametrize("version", ["2.1", "2.0"])
def test_sql_spans_on_sqlite(tmp_path, version, request):
    env = {"TEST_DB_URL": f"sqlite:///{tmp_path}/t.db"}
    if version == "2.0":
        env["PYTHONPATH"] = request.getfixturevalue("sqlalchemy_20")
    result = run_scenario(SPAN_SCENARIO, env=env)
    assert result["version"].startswith(version + ".")
    _check_spans(result, "sqlite", server=False)


@pytest.mark.parametrize("version", ["2.1", "2.0"])
def test_sql_spans_on_postgresql(postgres_url, version, request):
    env = {"TEST_DB_URL": postgres_url}
    if version == "2.0":
        env["PYTHONPATH"] = request.getfixturevalue("sqlalchemy_20")
        # SQLAlchemy 2.0 maps postgresql:// to psycopg2 (shipped by the demo extra)
    result = run_scenario(SPAN_SCENARIO, env=env)
    assert result["version"].startswith(version + ".")
    from sqlalchemy.engine import make_url

    _check_spans(result, "postgresql", server=True, port=make_url(postgres_url).port or 5432)
    assert result["spans"][1]["attributes"]["db.response.status_code"] == "42P01"  # undefined_table
