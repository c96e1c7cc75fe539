"""The demo MyStocks API: a small but real FastAPI service to instrument, load and break.

``create_app()`` (``mystocks_otel_dev.demo.app``) builds it; ``serve()`` (``.server``) runs it;
``run_traffic()`` (``.traffic``) drives it; ``/admin/faults`` (``.faults``) breaks it on purpose.
Nothing here touches the network at import time: connections open in the app's lifespan.
"""
