"""The apps under test: one trivial FastAPI endpoint, bare or instrumented by each library.

``bare_app`` and ``ours_app`` are also uvicorn factories
(``uvicorn benchmarks.apps:ours_app --factory``). ``BENCH_SERIES=N`` in the environment makes
``ours_app`` hold N extra counter series, for the scrape-under-load row.
"""

from __future__ import annotations

import os

#: Every variant of the direct-ASGI row; ``bare`` is the baseline.
ASGI_VARIANTS = ("bare", "ours", "ours_body_size", "instrumentator", "starlette_exporter", "upstream")

LABELS = {
    "bare": "bare FastAPI",
    "ours": "mystocks-otel setup_telemetry",
    "ours_body_size": "mystocks-otel setup_telemetry, MYSTOCKS_OTEL_HTTP_BODY_SIZE=true",
    "instrumentator": "prometheus-fastapi-instrumentator",
    "starlette_exporter": "starlette-exporter",
    "upstream": "OTel FastAPIInstrumentor + PrometheusMetricReader",
}


def _trivial_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping():
        return {"ok": True}

    return app


def _instrument_ours(app, **options):
    from mystocks_otel import setup_telemetry

    setup_telemetry(app, system_metrics=False, **options)


def _instrument_ours_body_size(app):
    """Ours with the body-size histograms on. The settings are process-wide (the first
    set-up's win), so this app's layer is given them itself: same layer, same recorders."""
    from dataclasses import replace

    from mystocks_otel._internal import asgi

    _instrument_ours(app)
    app.middleware_stack = app.build_middleware_stack()  # what Starlette builds on first call
    for layer in asgi.layers(app):
        layer.settings = replace(layer.settings, http_body_size=True)


def _instrument_instrumentator(app):
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator().instrument(app).expose(app)


def _instrument_starlette_exporter(app):
    from starlette_exporter import PrometheusMiddleware, handle_metrics

    app.add_middleware(PrometheusMiddleware)
    app.add_route("/metrics", handle_metrics)


def _instrument_upstream(app):
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    # Its own registry: prometheus_client's default one is the instrumentator's.
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())])
    FastAPIInstrumentor.instrument_app(app, meter_provider=provider)


_INSTRUMENT = {
    "bare": lambda app: None,
    "ours": _instrument_ours,
    "ours_body_size": _instrument_ours_body_size,
    "instrumentator": _instrument_instrumentator,
    "starlette_exporter": _instrument_starlette_exporter,
    "upstream": _instrument_upstream,
}


def build(variant: str):
    app = _trivial_app()
    _INSTRUMENT[variant](app)
    return app


# -- uvicorn factories --------------------------------------------------------------------------

def bare_app():
    return build("bare")


def ours_app():
    app = build("ours")
    extra = int(os.environ.get("BENCH_SERIES", "0"))
    if extra:
        from . import series

        series.fill_ours(series.plan(extra))
    return app
