"""The app the alert-webhook tests run: FastAPI, ``setup_telemetry`` and the alert-lifecycle router.

A real module rather than a code string, so that the live test can run it under uvicorn
(``uvicorn webhook_app:app``, with ``ALERT_WEBHOOK_TOKEN`` in the environment) and the
in-process test can build the same app with :func:`create_app`.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from mystocks_otel import setup_telemetry
from mystocks_otel.alert_webhook import alert_webhook_router


def create_app(token: str | None = None) -> FastAPI:
    app = FastAPI()
    setup_telemetry(app)
    # No token: open, as chosen explicitly (the in-process tests post without one).
    app.include_router(alert_webhook_router(token=token, allow_unauthenticated=token is None))
    return app


def __getattr__(name: str):
    # `uvicorn webhook_app:app` builds the app on first access, not at import (the in-process
    # test imports this module under a metrics capture).
    if name == "app":
        return create_app(token=os.environ.get("ALERT_WEBHOOK_TOKEN") or None)
    raise AttributeError(name)
