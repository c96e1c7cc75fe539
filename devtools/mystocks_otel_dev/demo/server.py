"""Run the demo with uvicorn and say where everything is (``mystocks-otel demo``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import uvicorn

APP_FACTORY = "mystocks_otel_dev.demo.app:create_app"


def urls(host: str, port: int) -> dict[str, str]:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    return {
        "API docs": f"{base}/docs",
        "Metrics": f"{base}/metrics",
        "Metrics health": f"{base}/metrics/health",
        "Metric list": f"{base}/metrics/list",
        "Health": f"{base}/health",
        "Fault switches": f"{base}/admin/faults",
        "Quote feed (WebSocket)": f"ws://{shown}:{port}/ws/quotes",
    }


def traffic_command(host: str, port: int) -> str:
    """A command that drives traffic at this demo from any shell: the venv's own
    ``mystocks-otel`` by absolute path (a bare ``python -m`` fails outside the venv)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    script = Path(sys.executable).with_name("mystocks-otel")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "mystocks_otel.cli"]
    return shlex.join([*launcher, "traffic", "--base-url", base])


def serve(host: str = "127.0.0.1", port: int = 8000, reload: bool = False, factory: bool = True) -> None:
    """Serve the instrumented demo until interrupted.

    ``factory=True`` lets uvicorn build the app in the serving process (required for ``reload``,
    and right for telemetry: the MeterProvider is made where it runs).
    """
    if reload and not factory:
        raise ValueError("reload needs factory=True: uvicorn re-imports the app by name")
    print("MyStocks demo API")
    for name, url in urls(host, port).items():
        print(f"  {name:<24} {url}")
    print(f"  Traffic: {traffic_command(host, port)}", flush=True)
    if factory:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, reload=reload)
    else:
        from .app import create_app

        uvicorn.run(create_app(), host=host, port=port)
