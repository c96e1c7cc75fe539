"""Documentation generators, one module per document, each with ``generate(cfg)``.

- ``metrics``: docs/METRICS.md, every catalog metric with its type, unit, priority and labels;
- ``alerting``: docs/ALERTING.md and docs/runbooks.md, from the rules they describe.
"""
