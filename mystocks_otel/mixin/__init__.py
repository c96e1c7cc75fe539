"""Monitoring as code: alert and recording rules, dashboards and docs generated from the catalog.

``mixin.config`` is the one place for thresholds, SLO targets, selectors and links;
``mystocks-otel render`` regenerates every committed artefact from it.
"""
