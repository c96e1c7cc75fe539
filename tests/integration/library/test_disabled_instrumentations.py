"""``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` turns our instrumentors off under
``opentelemetry-instrument``, by entry-point name (as users of the upstream distro expect) or
by our alias, in a real uvicorn process running the zero-code app (apps/distro_app.py).

- ``sqlalchemy`` / ``mystocks_sqlalchemy``: no DB metric, while HTTP and Redis ones work;
- ``redis`` / ``mystocks_redis``: no Redis metric, while HTTP and DB ones work;
- ``fastapi`` / ``mystocks_fastapi``: no HTTP or WebSocket metric, while ``/metrics`` is still
  served with the DB, Redis and business metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import base_env, get, run_process, samples, scrape, series, uvicorn_argv
from support import free_port, wait_until

pytestmark = pytest.mark.live

APP_SOURCE = Path(__file__).parent / "apps" / "distro_app.py"
HTTP = "http_server_request_duration_seconds_count"
DB = "mystocks_db_query_duration_seconds_count"
REDIS = "mystocks_redis_command_duration_seconds_count"
ORDERS = "mystocks_trading_orders_total"


def run_app(tmp_path: Path, redis_url: str, disabled: str, http: bool = True) -> str:
    """Start the app with ``disabled``, send three requests, return /metrics once it has them
    (the HTTP layer records a request once its response is sent: ``http`` waits for that)."""
    shutil.copy(APP_SOURCE, tmp_path / "distro_app.py")
    port = free_port()
    env = base_env(tmp_path, APP_REDIS_URL=redis_url, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled,
                   MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("distro_app:app", port), tmp_path, env) as proc:
        proc.wait_port(port)
        for item in ("AAPL", "MSFT", "TSLA"):
            status, body = get(port, f"/items/{item}")
            assert status == 200, body
        def settled():
            text = scrape(port)
            done = total(text, ORDERS) == 3 and (not http or total(text, HTTP) == 3)
            return text if done else None

        text = wait_until(settled, what="the three requests' metrics")
        assert "Traceback" not in proc.output(), proc.output()
    return text


def total(text: str, name: str) -> float:
    return sum(s.value for s in series(text, name))


def family(text: str, prefix: str) -> list:
    return [s for s in samples(text) if s.name.startswith(prefix)]


@pytest.mark.parametrize("disabled", ["sqlalchemy", "mystocks_sqlalchemy"])
def test_disabling_sqlalchemy_leaves_the_db_metrics_empty(tmp_path, redis_url, disabled):
    text = run_app(tmp_path, redis_url, disabled)
    assert family(text, "mystocks_db_") == []
    assert total(text, HTTP) == 3 and total(text, REDIS) >= 3 and total(text, ORDERS) == 3


@pytest.mark.parametrize("disabled", ["redis", "mystocks_redis"])
def test_disabling_redis_leaves_the_redis_metrics_empty(tmp_path, redis_url, disabled):
    text = run_app(tmp_path, redis_url, disabled)
    assert family(text, "mystocks_redis_") == []
    assert total(text, HTTP) == 3 and total(text, DB) >= 3 and total(text, ORDERS) == 3


@pytest.mark.parametrize("disabled", ["fastapi", "mystocks_fastapi"])
def test_disabling_fastapi_keeps_metrics_served_without_http_metrics(tmp_path, redis_url, disabled):
    text = run_app(tmp_path, redis_url, disabled, http=False)
    assert family(text, "http_server_") == [] and family(text, "mystocks_websocket_") == []
    assert total(text, DB) >= 3 and total(text, REDIS) >= 3 and total(text, ORDERS) == 3


def test_several_names_and_spaces_as_the_launcher_reads_them(tmp_path, redis_url):
    text = run_app(tmp_path, redis_url, "requests , sqlalchemy,mystocks_redis")
    assert family(text, "mystocks_db_") == [] and family(text, "mystocks_redis_") == []
    assert total(text, HTTP) == 3 and total(text, ORDERS) == 3
