"""mystocks-otel's dev tools (the ``mystocks-otel-dev`` distribution, never in the library's
wheel): ``demo/`` is the MyStocks demo API with its traffic generator and fault switches;
``stack/`` is the local monitoring stack (``runner``), its one process harness
(``processes``) and the notification sink. ``cli`` adds ``demo``, ``traffic`` and ``stack``
to the ``mystocks-otel`` command."""
