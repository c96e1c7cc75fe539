"""Everything of mystocks-otel that is not its API: import nothing from here.

The API is the package itself (``mystocks_otel``: ``setup_telemetry``, the recorders,
``metrics_router``, ``alert_webhook_router``) and its public modules: ``catalog``, ``config``,
``testing``, ``distro``, ``endpoints``, ``alert_webhook``, ``cli`` and ``integrations``. Names
in this package may change in any release. A layering test (tests/unit/library/test_layering.py)
keeps the mixin and the dev tools out of it.

- ``state``: every process-wide object and the one fork hook;
- ``telemetry`` (``setup_telemetry``), ``runtime`` (instrumentors and poller), ``provider``
  (the MeterProvider), ``recorders`` (the ``record_*`` API);
- ``instruments`` (pre-aggregated recorders), ``exposition`` (``/metrics``), ``sdk_bridge`` and
  ``prefork`` (OTLP), ``export_health``, ``health``, ``system``, ``asgi``, ``auth``,
  ``native_telemetry``, ``standalone``;
- ``multiprocess``: several workers, one ``/metrics``.
"""
