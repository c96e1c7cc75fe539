"""The uninstrumented demo as a module-level ``app``, for zero-code instrumentation:

    opentelemetry-instrument uvicorn mystocks_otel_dev.demo.plain:app

Building the app touches no network (connections open in its lifespan), so importing is safe.
"""

from .app import create_plain_app

app = create_plain_app()
